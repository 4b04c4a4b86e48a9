using Loom.Inference.Constrained;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Loom.Inference.Adapters;
using Loom.Inference.Formats;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Scheduling;
using Loom.Inference.Sampling;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Engine;

/// <summary>The multi-adapter serving engine: one loop on its own thread runs schedule → load adapters → forward one
/// mixed batch (prefill chunks and decodes, many adapters, unmerged) → sample → stream, on the unified page pool
/// (KV pages and adapter pages from one free list). Each request streams through its own channel and samples with
/// its own generator, so its tokens do not depend on what else is in the batch.</summary>
public sealed partial class ServingEngine : IInferenceEngine, IDisposable
{
    private readonly Transformer _model;
    private readonly ITokenizer? _tokenizer;
    private TokenTrie? _trie; // the vocabulary's byte trie, built at the first constrained request
    private readonly InferenceOptions _options;
    private readonly PagePool _pool;         // KV pages, and adapter pages too (unified)
    private readonly PagePool _adapterPool;  // the same pool, or a fixed adapter partition (benchmark comparison only)
    private readonly AdapterStore _store;
    private readonly KvSwapSpace? _swap;     // host memory for swapped-out KV caches; null: recompute only
    private readonly PrefixBlockCache? _blocks; // shared full KV blocks on pool pages (automatic prefix caching); null: off
    private readonly KvCacheFormat _kvFormat;   // how the KV pages hold keys and values (Inference:KvCacheFormat)
    private readonly Scheduler _scheduler;
    private readonly ISchedulingPolicy _policy;
    private readonly ForwardState _state;
    private readonly IDeviceSampling? _deviceSampling; // the backend samples on the device (null: the host samples every row)
    private readonly DeviceSampleBatch? _sampling;     // (MaxRunningSequences) this step's rows for the device, and its results
    private readonly int[] _eos;
    private readonly ConcurrentQueue<Request> _arrivals = new();
    private readonly ConcurrentQueue<Request> _cancels = new();
    private readonly AutoResetEvent _wake = new(false);
    private readonly Thread _thread;
    private readonly Dictionary<string, string> _folders = new(StringComparer.Ordinal);
    private readonly Lock _registry = new();
    private readonly Dictionary<string, (string Folder, TaskCompletionSource Done)> _registering = new(StringComparer.Ordinal); // reads under way
    private readonly List<ScheduledChunk> _batch = [];
    private readonly List<string> _prefetchIds = [];
    private Task _prefetch = Task.CompletedTask;
    /// <summary>Tests only: when set, each iteration of the loop first takes a permit, so a test can hold the engine
    /// between iterations and let it run a given number of them.</summary>
    internal SemaphoreSlim? Steps;
    /// <summary>Tests only: requests handed to the engine that its loop has not taken in yet.</summary>
    internal int ArrivalsQueued => _arrivals.Count;
    /// <summary>Tests only: called on the copy thread before each asynchronous swap copy (true: out).</summary>
    internal Action<PagedKvCache, bool>? SwapCopyHook;
    private readonly List<Request> _copies = [];   // swap copies under way or not yet taken back (loop thread)
    private readonly SwapCopier _copier = new();
    private readonly Dictionary<string, Task> _hostLoads = new(StringComparer.Ordinal); // adapter reads admission waits for (loop thread)
    private volatile bool _stopping;
    private int _disposed; // 1 once Dispose has begun (exactly one caller disposes)
    private int _nextSequence;
    private Counters _c;

    public ModelInfo Model { get; }

    public ServingEngine(Transformer model, ITokenizer? tokenizer, InferenceOptions options, string name = "model", ISchedulingPolicy? policy = null)
        : this(model, tokenizer, options, name, policy, adapterPartitionBytes: 0) { }

    /// <param name="adapterPartitionBytes">0: one unified pool (what Loom serves). Otherwise the pool is split into a
    /// KV partition of PoolBytes minus this and a fixed adapter partition of this size: the layout unified paging
    /// replaces, kept only to measure the difference.</param>
    internal ServingEngine(Transformer model, ITokenizer? tokenizer, InferenceOptions options, string name, ISchedulingPolicy? policy, long adapterPartitionBytes)
    {
        if (options.Problem() is { } problem) throw new ArgumentException(problem, nameof(options));
        _model = model;
        _tokenizer = tokenizer;
        _options = options;
        var c = model.Config;
        _kvFormat = options.KvCacheFormat;
        if (_kvFormat != KvCacheFormat.F32 && model.Backend is not null)
            throw new ArgumentException(InferenceBackends.CpuOnlyOnDevice("KvCacheFormat", _kvFormat.Name(), model.BackendDescription), nameof(options));
        if (options.AdapterPageFormat != AdapterPageFormat.F32 && model.Backend is not null)
            throw new ArgumentException(InferenceBackends.CpuOnlyOnDevice("AdapterPageFormat", options.AdapterPageFormat.Name(), model.BackendDescription), nameof(options));
        // A pool page is one hidden-size row of floats; a KV block is whole positions of KV width per page.
        if (_kvFormat.BlockTokens(c.HiddenSize, c.KvDim) < 1)
            throw new NotSupportedException($"the model's KV width ({c.NumKvHeads} KV heads × {c.HeadDim} = {c.KvDim}) in {_kvFormat.Name()} exceeds its hidden size ({c.HiddenSize} floats); the page pool stores a KV position within one hidden-size page, so this model cannot be served");
        if (adapterPartitionBytes < 0 || adapterPartitionBytes >= options.PoolBytes) throw new ArgumentOutOfRangeException(nameof(adapterPartitionBytes));
        _pool = new PagePool(options.PoolBytes - adapterPartitionBytes, c.HiddenSize);
        _adapterPool = adapterPartitionBytes == 0 ? _pool : new PagePool(adapterPartitionBytes, c.HiddenSize);
        _store = new AdapterStore(c, _adapterPool, new AdapterStoreOptions
        {
            MaxRank = options.MaxLoraRank, HostCacheBytes = options.HostAdapterCacheBytes, PageFormat = options.AdapterPageFormat,
        });
        _policy = policy ?? options.CreatePolicy();
        _swap = options.SwapSpaceBytes > 0 ? new KvSwapSpace(_pool, options.SwapSpaceBytes) : null;
        _blocks = options.PrefixCaching ? new PrefixBlockCache(_pool, _kvFormat.BlockTokens(_pool.PageFloats, c.KvDim), c.NumLayers, _kvFormat) : null;
        _scheduler = new Scheduler(_policy, new PoolMemory(this),
            new SchedulerLimits(options.TokenBudget, options.MaxRunningSequences, Math.Min(options.PrefillChunk, options.TokenBudget)));
        _state = model.CreateState(options.TokenBudget, options.MaxRunningSequences, maxLoraRank: options.MaxLoraRank);
        if (options.DeviceSampling && model.Backend is IDeviceSampling device)
        {
            _deviceSampling = device;
            _sampling = new DeviceSampleBatch(options.MaxRunningSequences);
        }
        var eos = new HashSet<int>(c.EosTokenIds);
        if (tokenizer != null) eos.UnionWith(tokenizer.EosTokenIds);
        _eos = eos.ToArray();
        Model = new ModelInfo(name, c, model.MaxContext, tokenizer)
        {
            Backend = model.BackendDescription, KvCacheFormat = _kvFormat.Name(), AdapterPageFormat = options.AdapterPageFormat.Name(),
        };
        _thread = new Thread(Loop) { IsBackground = true, Name = "loom-engine" };
        _thread.Start();
    }

    /// <summary>Loads config.json, the safetensors weights and (when present) tokenizer.json from a model folder; the model
    /// is served as <paramref name="name"/>, or by its folder's name.</summary>
    public static ServingEngine Load(InferenceOptions options, string? name = null)
    {
        string dir = options.ModelDirectory ?? throw new ArgumentException("ModelDirectory is not set");
        if (InferenceBackends.KvCacheFormatProblem(InferenceBackends.Resolve(options.Backend), options.KvCacheFormat, options.Backend) is { } kvProblem)
            throw new ArgumentException(kvProblem, nameof(options));
        if (InferenceBackends.AdapterPageFormatProblem(InferenceBackends.Resolve(options.Backend), options.AdapterPageFormat, options.Backend) is { } adapterProblem)
            throw new ArgumentException(adapterProblem, nameof(options));
        var config = ModelConfig.Load(dir);
        var weights = ModelWeights.Load(dir, config, options.WeightFormat);
        var model = new Transformer(weights, maxContext: options.MaxContext);
        try
        {
            InferenceBackends.Apply(model, options.Backend);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        var tokenizer = File.Exists(Path.Combine(dir, "tokenizer.json")) ? TokenizerLoader.Load(dir) : null;
        return new ServingEngine(model, tokenizer, options, name is { Length: > 0 } ? name : Path.GetFileName(Path.TrimEndingDirectorySeparator(dir)));
    }

    /// <summary>The unified pool (tests audit it).</summary>
    internal PagePool Pool => _pool;

    /// <summary>The page pool's accounting check (<see cref="PagePool.Audit"/>: every page free xor owned, the counters
    /// match the tags), of the adapter partition too where there is one: the first violation, or null. O(pages) under
    /// the pool's lock, safe while the engine runs; for metrics and diagnostics.</summary>
    public string? AuditPool() => _pool.Audit() ?? (Unified ? null : _adapterPool.Audit());
    private bool Unified => ReferenceEquals(_pool, _adapterPool);
    internal AdapterStore Adapters => _store;

    // ---- adapters -------------------------------------------------------------------------------------------

    public void RegisterAdapter(string adapterId, string folder, bool validated = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(adapterId);
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        ObjectDisposedException.ThrowIf(_stopping, this);
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        TaskCompletionSource mine;
        Task? concurrent = null;
        lock (_registry)
        {
            if (_folders.TryGetValue(adapterId, out var existing))
            {
                if (existing == full) return;
                throw new InvalidOperationException($"adapter '{adapterId}' is already registered from another folder ({existing})");
            }
            mine = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_registering.TryGetValue(adapterId, out var pending))
            {
                if (pending.Folder != full)
                    throw new InvalidOperationException($"adapter '{adapterId}' is being registered from another folder ({pending.Folder})");
                concurrent = pending.Done.Task;
            }
            else _registering.Add(adapterId, (full, mine));
        }
        if (concurrent is not null)
        {
            concurrent.GetAwaiter().GetResult(); // the same registration under way: its outcome, error included
            return;
        }
        // The folder is read and validated outside the registry lock: requests for other adapters keep being prepared.
        try
        {
            _store.Register(adapterId, full, validated); // throws AdapterFormatException with nothing registered
            lock (_registry)
            {
                _folders.Add(adapterId, full);
                _registering.Remove(adapterId);
            }
            mine.SetResult();
        }
        catch (Exception e)
        {
            lock (_registry) _registering.Remove(adapterId);
            mine.SetException(e);
            throw;
        }
    }

    public bool IsAdapterRegistered(string adapterId)
    {
        lock (_registry) return _folders.ContainsKey(adapterId);
    }

    public void UnregisterAdapter(string adapterId)
    {
        lock (_registry)
        {
            if (!_folders.ContainsKey(adapterId)) return;
            _store.Unregister(adapterId); // refuses while a running request pins it
            _blocks?.Forget(adapterId);   // the id may come back with other weights
            _folders.Remove(adapterId);
        }
    }

    // ---- requests -------------------------------------------------------------------------------------------

    public async IAsyncEnumerable<GenerationEvent> GenerateAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_stopping, this);
        var r = Prepare(request);
        cancellationToken.ThrowIfCancellationRequested();
        _arrivals.Enqueue(r);
        // Racing Dispose: the wake handle may be gone, or the loop may have stopped before taking this request in.
        try { _wake.Set(); }
        catch (ObjectDisposedException) { }
        if (_stopping && !_thread.IsAlive) Close(r, new ObjectDisposedException(nameof(ServingEngine))); // lost the race with Dispose
        using var registration = cancellationToken.Register(static o => ((Request)o!).Engine.Cancel((Request)o!), r);
        bool done = false;
        try
        {
            await foreach (var ev in r.Channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                if (ev.IsFinal) done = true;
                yield return ev;
            }
        }
        finally
        {
            if (!done) Cancel(r); // the reader went away (cancelled, or stopped reading): free its pages
        }
    }

    private Request Prepare(GenerationRequest request)
    {
        var p = request.Sampling;
        p.Validate();
        if (!(request.TenantShare > 0) || double.IsInfinity(request.TenantShare))
            throw new ArgumentException($"the tenant share must be positive and finite, not {request.TenantShare}", nameof(request));
        int[] prompt = PromptTokens.Of(request, _tokenizer);
        var c = _model.Config;
        if (prompt.Length == 0) throw new ArgumentException("the prompt is empty");
        foreach (int id in prompt)
            if ((uint)id >= (uint)c.VocabSize) throw new ArgumentException($"prompt token id {id} is outside the vocabulary ({c.VocabSize})");
        if (prompt.Length >= _model.MaxContext)
            throw new ArgumentException($"the prompt has {prompt.Length} tokens; the context limit is {_model.MaxContext}");
        int adapterPages = 0;
        if (request.AdapterId is { } adapterId)
        {
            if (!IsAdapterRegistered(adapterId)) throw new ArgumentException($"adapter '{adapterId}' is not registered", nameof(request));
            try { adapterPages = _store.PagesOf(adapterId); }
            catch (KeyNotFoundException) { throw new ArgumentException($"adapter '{adapterId}' is not registered", nameof(request)); }
        }
        // the most positions this sequence's KV can ever hold: the whole pool less its adapter
        int blockPages = 2 * c.NumLayers, blockTokens = _kvFormat.BlockTokens(_pool.PageFloats, c.KvDim);
        int poolTokens = (_pool.PageCount - (Unified ? adapterPages : 0)) / blockPages * blockTokens;
        if (prompt.Length + 1 > poolTokens)
            throw new ArgumentException($"the prompt has {prompt.Length} tokens; the page pool can hold at most {Math.Max(0, poolTokens - 1)} with {(request.AdapterId is null ? "no adapter" : $"adapter '{request.AdapterId}'")} (Inference:PoolBytes)");
        int maxNew = Math.Min(p.MaxTokens, Math.Min(_model.MaxContext, poolTokens) - prompt.Length);
        var stopIds = new HashSet<int>(p.StopTokenIds);
        if (!p.IgnoreEos) stopIds.UnionWith(_eos);
        int id2 = Interlocked.Increment(ref _nextSequence);
        var seq = new Sequence(id2, prompt, prompt.Length + maxNew, request.AdapterId, request.TenantId, request.Priority);
        var r = new Request(this, seq, maxNew, new Sampler(p, c.VocabSize, ConstraintFor(p), prompt), _tokenizer?.CreateStreamingDecoder(), new StopStringMatcher(p.StopStrings),
            stopIds, p.Logprobs, PagedKvCache.For(_pool, c, id2, prompt.Length + maxNew, _kvFormat));
        seq.Handle = r;
        (_policy as VtcPolicy)?.SetShare(request.TenantId, request.TenantShare);
        return r;
    }

    /// <summary>The per-request grammar state for constrained output, over this model's vocabulary (its trie built once).</summary>
    private TokenConstraint? ConstraintFor(SamplingParams p)
    {
        if (p.Grammar is not { } grammar) return null;
        var tokenizer = _tokenizer ?? throw new ArgumentException("constrained output needs the model's tokenizer");
        var trie = LazyInitializer.EnsureInitialized(ref _trie, () => TokenTrie.Build(tokenizer));
        return new TokenConstraint(grammar, trie, id => tokenizer.IsSpecial(id) ? null : tokenizer.TokenBytes(id), _eos,
            p.GrammarTrigger is { } trigger ? System.Text.Encoding.UTF8.GetBytes(trigger) : null);
    }

    private void Cancel(Request r)
    {
        if (Interlocked.Exchange(ref r.CancelRequested, 1) != 0) return;
        _cancels.Enqueue(r);
        try { _wake.Set(); }
        catch (ObjectDisposedException) { } // the engine is gone, and with it every page
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stopping = true;
        _wake.Set();
        _thread.Join();
        foreach (var r in _copies) // left only by a fault: the pool and the host buffers must outlive the copies
            try { r.Copy?.Wait(); }
            catch (AggregateException) { }
        _copier.Dispose();
        while (_arrivals.TryDequeue(out var late)) Close(late, new ObjectDisposedException(nameof(ServingEngine)));
        _wake.Dispose();
        _swap?.Dispose();
        _pool.Dispose();
        if (!Unified) _adapterPool.Dispose();
        _model.Dispose();
    }
}
