using System;

namespace Herald
{
    /// <summary>
    /// Exponential backoff with full jitter: the n-th wait is uniform in
    /// [0, min(max, min·2ⁿ)], so that clients a node dropped together do not
    /// all come back together.
    /// </summary>
    public sealed class Backoff
    {
        readonly TimeSpan min, max;
        readonly Random random;
        int attempt;

        public Backoff(TimeSpan min, TimeSpan max, Random random)
        {
            if (min <= TimeSpan.Zero || max < min) throw new ArgumentException("backoff needs 0 < min <= max");
            this.min = min;
            this.max = max;
            this.random = random ?? new Random();
        }

        /// <summary>The cap of the next wait: min·2ⁿ, at most max.</summary>
        public TimeSpan Ceiling
        {
            get
            {
                double ms = min.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 30));
                return TimeSpan.FromMilliseconds(Math.Min(ms, max.TotalMilliseconds));
            }
        }

        /// <summary>The next wait; each call doubles the ceiling up to max.</summary>
        public TimeSpan Next()
        {
            double cap = Ceiling.TotalMilliseconds;
            attempt++;
            lock (random) return TimeSpan.FromMilliseconds(random.NextDouble() * cap);
        }

        /// <summary>Starts over after a connection that worked.</summary>
        public void Reset() { attempt = 0; }
    }
}
