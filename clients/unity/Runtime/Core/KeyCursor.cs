using System.Collections.Generic;

namespace Herald
{
    /// <summary>
    /// Where the client stands in its key's stream of stored messages: what
    /// came (to drop repeats), what its handlers failed on (to have it again),
    /// how far an ack may go, and where the next connection resumes.
    ///
    /// Acks are cumulative on the server, so once a handler threw on M no ack
    /// may pass M until M was handled; the next connection resumes just
    /// before M, and what followed M and was handled already is a repeat.
    /// </summary>
    internal sealed class KeyCursor
    {
        struct Before
        {
            public bool Has;
            public StoredId Id;
        }

        bool hasReceived, hasHandled;
        StoredId received, handled;
        // Each failed message, with the last message handled before it.
        readonly SortedDictionary<StoredId, Before> failed = new SortedDictionary<StoredId, Before>();

        /// <summary>Whether a message that came should be handed to the app (false: a repeat).</summary>
        public bool Accept(StoredId id)
        {
            if (failed.ContainsKey(id)) return true;
            if (hasReceived && !id.After(received)) return false;
            received = id;
            hasReceived = true;
            return true;
        }

        /// <summary>Records that every handler returned for id (ok), or that one threw.</summary>
        public void Handled(StoredId id, bool ok)
        {
            if (ok) failed.Remove(id);
            else if (!failed.ContainsKey(id)) failed[id] = new Before { Has = hasHandled, Id = handled };
            if (!hasHandled || id.After(handled))
            {
                handled = id;
                hasHandled = true;
            }
        }

        /// <summary>How many messages wait to be handled again.</summary>
        public int Failed { get { return failed.Count; } }

        /// <summary>The furthest id an ack may name: everything up to it was handled.</summary>
        public bool AckPoint(out StoredId id)
        {
            if (failed.Count == 0)
            {
                id = handled;
                return hasHandled;
            }
            return FirstFailedBefore(out id);
        }

        /// <summary>The since= of the next connection; false: none (the key's unacked messages).</summary>
        public bool ResumePoint(out StoredId id)
        {
            if (failed.Count == 0)
            {
                id = received;
                return hasReceived;
            }
            return FirstFailedBefore(out id);
        }

        bool FirstFailedBefore(out StoredId id)
        {
            foreach (var f in failed)
            {
                id = f.Value.Id;
                return f.Value.Has;
            }
            id = new StoredId();
            return false;
        }
    }
}
