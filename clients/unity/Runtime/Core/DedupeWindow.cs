using System.Collections.Generic;

namespace Herald
{
    /// <summary>
    /// The ids of the last Capacity messages seen: a message that comes again
    /// (a resend after a reconnect) is recognised while its id is in the
    /// window. Stored messages need no window: their ids increase per stream.
    /// </summary>
    public sealed class DedupeWindow
    {
        readonly int capacity;
        readonly HashSet<string> seen = new HashSet<string>();
        readonly Queue<string> order = new Queue<string>();

        public DedupeWindow(int capacity)
        {
            this.capacity = capacity < 1 ? 1 : capacity;
        }

        public int Capacity { get { return capacity; } }
        public int Count { get { return seen.Count; } }

        /// <summary>Records id; false when it was in the window already.</summary>
        public bool Add(string id)
        {
            if (!seen.Add(id)) return false;
            order.Enqueue(id);
            if (order.Count > capacity) seen.Remove(order.Dequeue());
            return true;
        }
    }
}
