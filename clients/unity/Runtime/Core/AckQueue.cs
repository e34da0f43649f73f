namespace Herald
{
    /// <summary>
    /// The ack the client owes the server. Acks are cumulative, so only the
    /// furthest one matters; it is sent again on each new connection, since
    /// one sent as a connection died may never have arrived.
    /// </summary>
    internal sealed class AckQueue
    {
        bool hasWanted, sent;
        StoredId wanted;

        /// <summary>Owes an ack of id, unless one further is owed already.</summary>
        public void Want(StoredId id)
        {
            if (hasWanted && !id.After(wanted)) return;
            wanted = id;
            hasWanted = true;
            sent = false;
        }

        /// <summary>The ack to send, if one is owed and not sent.</summary>
        public bool Take(out StoredId id)
        {
            id = wanted;
            if (!hasWanted || sent) return false;
            sent = true;
            return true;
        }

        /// <summary>A new connection: the last ack goes again.</summary>
        public void Resend() { sent = false; }
    }
}
