namespace Loom.Inference.Kernels;

/// <summary>Work of one parallel region, cut into a fixed number of chunks. A chunk's result may not depend on which
/// thread computes it or in which order the chunks run (each output is written by exactly one chunk, summed in one
/// fixed order), so a region gives the same bits on one core or many.</summary>
public abstract class PoolJob
{
    /// <summary>Computes chunk <paramref name="chunk"/> of the current region.</summary>
    public abstract void Execute(int chunk);
}

/// <summary>Persistent worker threads for the forward pass's parallel regions, started once per kernels instance:
/// one thread per core besides the caller, which computes chunks too. A region publishes its job by bumping a
/// generation counter; workers spin on it for a short while and then block, and claim chunks one at a time from a
/// shared counter (the chunk boundaries are fixed by the job; only who computes which chunk varies, so a core that
/// the scheduler takes away delays a region by one chunk, not by a fixed share). Nothing is allocated per region.
/// Not re-entrant: a region started while another one runs on this pool (another thread, or a job that starts one)
/// runs its chunks in order on the calling thread.</summary>
public sealed class WorkerPool : IDisposable
{
    /// <summary>How long a waiting thread spins before it blocks: 100 µs. A decode step's regions follow each other
    /// closer than that; the wait between steps is long enough to sleep through, and a spinning worker would take the
    /// core from whatever runs between steps (sampling, a training slice).</summary>
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 10_000;

    private readonly Thread[] _threads;
    private readonly long[] _allocated; // each worker's GC.GetAllocatedBytesForCurrentThread as of its latest region
    private readonly object _gate = new();
    private PoolJob? _job;
    private int _chunks;
    // high 32 bits: region generation; low 32 bits: next chunk to claim
    private long _state;
    private int _done;          // chunks of the current region finished
    private int _sleepers;      // workers blocked on _gate
    private int _callerWaiting; // the caller is blocked on _gate until _done == _chunks
    private int _busy;          // a region is running
    private volatile bool _stopping;
    private volatile bool _started;
    private Exception? _error;

    /// <summary>A pool for callers that bring none (tests, benchmarks, the static kernel entry points).</summary>
    public static WorkerPool Shared => SharedPool.Value;
    private static readonly Lazy<WorkerPool> SharedPool = new(() => new WorkerPool(Environment.ProcessorCount));

    /// <summary>Threads that compute a region, the caller included.</summary>
    public int Workers { get; }

    /// <param name="workers">Threads per region, the calling thread included (1: everything runs on the caller).</param>
    public WorkerPool(int workers)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        Workers = workers;
        _threads = new Thread[workers - 1];
        _allocated = new long[workers - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i;
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"loom-kernels-{i + 1}" };
        }
    }

    /// <summary>Managed bytes the pool's own threads (not the callers) have allocated, as of the latest region each took
    /// part in: read once per region per worker, when it finds no chunk left to claim, before it signals its last chunk
    /// done (not after every chunk: that read is on the hot path of ~150 regions per decode step), so a region that
    /// allocates on a worker raises it before the region returns. With the calling thread's own count, it tells what a
    /// forward pass allocates, whatever other threads of the process do meanwhile.</summary>
    public long WorkerAllocatedBytes
    {
        get
        {
            long sum = 0;
            for (int i = 0; i < _allocated.Length; i++) sum += Volatile.Read(ref _allocated[i]);
            return sum;
        }
    }

    /// <summary>The threads start with the first region that needs them (a model that never runs starts none).</summary>
    private void EnsureStarted()
    {
        if (_started) return;
        lock (_gate)
        {
            if (_started) return;
            foreach (var t in _threads) t.Start();
            _started = true;
        }
    }

    /// <summary>Runs chunks [0, <paramref name="chunks"/>) of <paramref name="job"/> on the pool's threads and the
    /// caller, and returns when all are done. The first exception a chunk throws is rethrown here.</summary>
    public void Run(PoolJob job, int chunks)
    {
        if (chunks <= 0) return;
        if (chunks == 1 || _threads.Length == 0 || _stopping || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            for (int c = 0; c < chunks; c++) job.Execute(c);
            return;
        }
        try
        {
            EnsureStarted();
            int previous = Generation(Volatile.Read(ref _state));
            // close the previous region before its fields change: a worker that read them may no longer claim a chunk
            Interlocked.Exchange(ref _state, ((long)previous << 32) | int.MaxValue);
            _job = job;
            _chunks = chunks;
            _done = 0;
            _error = null;
            int generation = unchecked(previous + 1);   // wraps; only compared for equality
            Interlocked.Exchange(ref _state, (long)generation << 32);   // publishes the fields above; workers may claim from here on
            if (Volatile.Read(ref _sleepers) > 0)
                lock (_gate) Monitor.PulseAll(_gate);
            Work(generation, worker: -1);
            WaitForChunks();
            _job = null;
            if (_error is { } error) throw new AggregateException("a parallel kernel chunk failed", error);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Claims and computes chunks of region <paramref name="generation"/> until none is left
    /// (<paramref name="worker"/>: the pool thread's index, or -1 for the caller). A chunk counts as done only after the
    /// next look at the claim counter, so a worker that finds no chunk left records its allocation count (once per
    /// region, with no extra read of the shared counter) before its last chunk counts as done: the count is current
    /// when the region returns.</summary>
    private void Work(int generation, int worker)
    {
        int ran = 0; // chunks of the current region: set once this thread has computed a chunk not yet counted as done
        while (true)
        {
            long s = Volatile.Read(ref _state);
            var job = _job;
            int chunks = _chunks;
            // (a region cannot end while this thread's chunk is not counted, so with one pending these are its own)
            bool over = Generation(s) != generation || (int)s >= chunks || job == null;
            if (ran != 0)
            {
                if (over && worker >= 0) Volatile.Write(ref _allocated[worker], GC.GetAllocatedBytesForCurrentThread());
                if (Interlocked.Increment(ref _done) == ran && Volatile.Read(ref _callerWaiting) != 0)
                    lock (_gate) Monitor.PulseAll(_gate);
                ran = 0;
            }
            if (over) return;
            // the claim succeeds only while the region is still this generation, so job and chunks read above are its own
            if (Interlocked.CompareExchange(ref _state, s + 1, s) != s) continue;
            try
            {
                job!.Execute((int)s);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
            }
            ran = chunks;
        }
    }

    private void WaitForChunks()
    {
        int chunks = _chunks;
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (int i = 0; ; i++)
        {
            if (Volatile.Read(ref _done) == chunks) return;
            if ((i & 15) == 15 && System.Diagnostics.Stopwatch.GetTimestamp() - start > SpinTicks) break;
            Spin(i);
        }
        lock (_gate)
        {
            Interlocked.Exchange(ref _callerWaiting, 1);
            while (Volatile.Read(ref _done) != chunks) Monitor.Wait(_gate);
            _callerWaiting = 0;
        }
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            int generation = WaitForRegion(seen);
            if (_stopping) return;
            seen = generation;
            Work(generation, worker);
        }
    }

    /// <summary>Spins, then blocks, until a region later than <paramref name="seen"/> starts; returns its generation.</summary>
    private int WaitForRegion(int seen)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        for (int i = 0; ; i++)
        {
            int g = Generation(Volatile.Read(ref _state));
            if (g != seen || _stopping) return g;
            if ((i & 15) == 15 && System.Diagnostics.Stopwatch.GetTimestamp() - start > SpinTicks) break;
            Spin(i);
        }
        lock (_gate)
        {
            Interlocked.Increment(ref _sleepers);
            int g;
            while ((g = Generation(Volatile.Read(ref _state))) == seen && !_stopping) Monitor.Wait(_gate);
            Interlocked.Decrement(ref _sleepers);
            return g;
        }
    }

    private static int Generation(long state) => (int)(state >> 32);

    /// <summary>A short pause that gives the core away now and then, since the machine may have fewer free cores than workers.</summary>
    private static void Spin(int i)
    {
        if ((i & 255) == 255) Thread.Yield();
        else Thread.SpinWait(4);
    }

    public void Dispose()
    {
        if (_stopping) return;
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        if (_started)
            foreach (var t in _threads) t.Join();
    }
}
