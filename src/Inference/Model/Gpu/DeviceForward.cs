using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Formats;
using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Memory;
using Loom.Inference.Sampling;

namespace Loom.Inference.Model.Gpu;

/// <summary>The forward pass on an ILGPU accelerator (CUDA, or ILGPU's CPU accelerator in the tests): the base weights are
/// uploaded once; the activations stay on the device for the whole pass; KV and adapter pages are read from a device
/// copy of the unified pool through page tables on the device. Per step the host uploads the batch's small tables
/// (tokens, positions, each sequence's page table, each token's adapter slot) and reads back the logits, or through
/// <see cref="ForwardSample"/> only the sampled tokens (and the logits rows of the rows the host samples). The new keys and
/// values stay on the device, whose pages are the authoritative copy; the host asks for pages before it reads them (a KV
/// swap-out: <see cref="DevicePoolMirror.ToHost"/>, on a copy stream). See docs/decisions/010-ilgpu-backend.md.</summary>
public sealed class DeviceForward : IForwardBackend, IDeviceSampling
{
    private readonly GpuAccelerator _device;
    private readonly GpuKernels _k;
    private readonly DeviceWeights _w;
    private readonly ModelConfig _c;
    private readonly Dictionary<PagePool, DevicePoolMirror> _mirrors = new(ReferenceEqualityComparer.Instance);
    private readonly ConditionalWeakTable<ForwardState, DeviceActivations> _states = [];
    private readonly List<DeviceActivations> _allStates = [];
    private readonly long _ownPoolBytes;
    private DeviceAdapterTables? _adapters;
    private PagePool? _ownPool;
    private int _nextCache;

    public string Description => $"{_device.Kind}: {_device.Description}";
    public GpuAccelerator Device => _device;
    /// <summary>Bytes of weights on the device.</summary>
    public long WeightBytes => _w.Bytes;
    /// <summary>Pool pages uploaded to the device so far (first reads of pages the host wrote).</summary>
    public long PageUploads => _mirrors.Values.Sum(m => m.Uploads);
    /// <summary>Bytes copied device → host, by kind.</summary>
    public DeviceTransfers Transfers { get; } = new();

    private bool _lazyCopies;
    /// <summary>(Tests) the pool mirrors' page copies run only when waited for, the latest an asynchronous stream may run
    /// them (<see cref="PageCopyStreams.Lazy"/>); set before the first step.</summary>
    internal bool LazyCopies
    {
        get => _lazyCopies;
        set
        {
            _lazyCopies = value;
            foreach (var m in _mirrors.Values) m.LazyCopies = value;
        }
    }

    /// <param name="ownPoolBytes">Size of the page pool behind <see cref="CreateCache"/> (caches made outside an engine).</param>
    public DeviceForward(GpuAccelerator device, Transformer model, long ownPoolBytes = 64L << 20)
    {
        _device = device;
        _c = model.Config;
        if (_c.HeadDim > GpuAttention.MaxHeadDim) throw new NotSupportedException($"head_dim {_c.HeadDim} exceeds the GPU attention kernel's {GpuAttention.MaxHeadDim}");
        _k = new GpuKernels(device);
        _w = new DeviceWeights(device.Accelerator, model.Weights, model.MaxContext);
        _ownPoolBytes = ownPoolBytes;
    }

    public IKvCache CreateCache(Transformer model, int maxTokens)
    {
        _ownPool ??= new PagePool(_ownPoolBytes, _c.HiddenSize);
        return PagedKvCache.For(_ownPool, _c, Interlocked.Increment(ref _nextCache), maxTokens);
    }

    public void Forward(Transformer model, ForwardState s, LogitsMode mode)
    {
        var a = Run(model, s, mode);
        if (a is null) return;
        int rows = mode == LogitsMode.AllPositions ? s.TokenCount : s.SequenceCount;
        if (mode == LogitsMode.HiddenStates)
        {
            a.Xb.SubView(0, (long)s.TokenCount * _c.HiddenSize).CopyToCPU(s.Xb.AsSpan(0, s.TokenCount * _c.HiddenSize));
            Transfers.Hidden(4L * s.TokenCount * _c.HiddenSize);
        }
        else
        {
            a.Logits.SubView(0, (long)rows * _c.VocabSize).CopyToCPU(s.LogitsBuffer.AsSpan(0, rows * _c.VocabSize));
            Transfers.Logits(4L * rows * _c.VocabSize);
        }
        Finish(s);
    }

    /// <summary>The forward pass with sampling on the device (<see cref="IDeviceSampling"/>): per step only the sampled
    /// tokens (and logprobs when asked) come back, and the logits rows of the rows the host samples.</summary>
    public void ForwardSample(Transformer model, ForwardState s, DeviceSampleBatch batch)
    {
        if (batch.Capacity < s.SequenceCount) throw new ArgumentException($"the batch has room for {batch.Capacity} rows, the state holds {s.SequenceCount} sequences", nameof(batch));
        var a = Run(model, s, LogitsMode.LastPerSequence);
        if (a is null) return;
        int S = s.SequenceCount, vocab = _c.VocabSize;
        a.Sampler ??= new DeviceSampler(_k, s.MaxSequences, vocab);
        long before = a.Sampler.BytesToHost;
        a.Sampler.Sample(a.Logits, batch, S);
        Transfers.Samples(a.Sampler.BytesToHost - before);
        for (int i = 0; i < S; i++)
        {
            var row = batch.Rows[i];
            if (row.Mode == DeviceSampleMode.Host || (row.OnDevice && batch.Results[i].NeedsHost != 0))
            {
                a.Logits.SubView((long)i * vocab, vocab).CopyToCPU(s.LogitsBuffer.AsSpan(i * vocab, vocab));
                Transfers.Logits(4L * vocab);
            }
        }
        Finish(s);
    }

    /// <summary>The forward pass with greedy sampling on the device: only the argmax id of each sequence's last logits
    /// comes back (ids: (SequenceCount)); the state's logits are not filled.</summary>
    public void ForwardGreedy(Transformer model, ForwardState s, Span<int> ids)
    {
        var a = Run(model, s, LogitsMode.LastPerSequence);
        if (a is null) return;
        _k.Argmax(a.Ids, a.Logits, _c.VocabSize, s.SequenceCount);
        a.Ids.SubView(0, s.SequenceCount).CopyToCPU(ids[..s.SequenceCount]);
        Transfers.Samples(4L * s.SequenceCount);
        Finish(s);
    }

    private DeviceActivations? Run(Transformer model, ForwardState s, LogitsMode mode)
    {
        var c = _c;
        int T = s.TokenCount, S = s.SequenceCount, dim = c.HiddenSize, qDim = c.QDim, kvDim = c.KvDim, hidden = c.IntermediateSize;
        if (T == 0) return null;
        if (!ReferenceEquals(model.Config, c)) throw new ArgumentException("this backend was built for another model", nameof(model));
        if (mode == LogitsMode.AllPositions && !s.AllPositionLogits)
            throw new InvalidOperationException("this state was created without room for all-position logits");
        for (int t = 0; t < T; t++)
            if ((uint)s.Tokens[t] >= (uint)c.VocabSize) throw new ArgumentOutOfRangeException(nameof(s), $"token id {s.Tokens[t]} is outside the vocabulary ({c.VocabSize})");
        var a = State(s);

        // KV: each sequence's page table, concatenated; its pages current on the device
        DevicePoolMirror? kvMirror = null;
        int table = 0;
        for (int i = 0; i < S; i++)
        {
            if (s.SeqCache[i] is not PagedKvCache cache)
                throw new NotSupportedException("the GPU backend reads KV from pool pages: make caches with Transformer.CreateCache or the engine's pool");
            if (cache.Format != KvCacheFormat.F32)
                throw new NotSupportedException($"the GPU backend reads f32 KV pages; this cache stores {cache.Format.Name()} (Inference:KvCacheFormat = bf16 is for the CPU backend)");
            cache.Reserve(cache.Length + s.SeqCount[i]);
            kvMirror ??= Mirror(cache.Pool);
            if (!ReferenceEquals(kvMirror.Pool, cache.Pool)) throw new NotSupportedException("every sequence of a batch must use one page pool");
            var pt = cache.PageTable;
            kvMirror.Sync(pt);
            a.EnsureTable(table + pt.Length);
            pt.CopyTo(a.HostKvTable.AsSpan(table));
            for (int t = s.SeqStart[i]; t < s.SeqStart[i] + s.SeqCount[i]; t++) a.HostTableOffset[t] = table;
            a.HostLastIndex[i] = s.SeqStart[i] + s.SeqCount[i] - 1;
            table += pt.Length;
        }

        // LoRA: each token's adapter slot (-1: base model)
        int maxRank = 0;
        DevicePoolMirror? adapterMirror = null;
        if (s.HasAdapters)
        {
            var adapters = s.SeqAdapter.AsSpan(0, S);
            _adapters ??= new DeviceAdapterTables(_device.Accelerator, c.NumLayers, kvMirror!.Pool.PageCount);
            _adapters.Prepare(adapters);
            for (int i = 0; i < S; i++)
            {
                int slot = -1;
                if (adapters[i] is { } r)
                {
                    ObjectDisposedException.ThrowIf(r.IsFreed, r);
                    adapterMirror ??= Mirror(r.Pool);
                    if (!ReferenceEquals(adapterMirror.Pool, r.Pool)) throw new NotSupportedException("every adapter of a batch must use one page pool");
                    slot = _adapters.SlotOf(r, adapterMirror);
                    maxRank = Math.Max(maxRank, r.Rank);
                }
                a.HostTokenSlot.AsSpan(s.SeqStart[i], s.SeqCount[i]).Fill(slot);
            }
            a.TokenSlot.SubView(0, T).CopyFromCPU(a.HostTokenSlot.AsSpan(0, T));
        }

        a.Tokens.SubView(0, T).CopyFromCPU(s.Tokens.AsSpan(0, T));
        a.Positions.SubView(0, T).CopyFromCPU(s.Positions.AsSpan(0, T));
        a.Lengths.SubView(0, T).CopyFromCPU(s.Lengths.AsSpan(0, T));
        a.TableOffset.SubView(0, T).CopyFromCPU(a.HostTableOffset.AsSpan(0, T));
        a.LastIndex.SubView(0, S).CopyFromCPU(a.HostLastIndex.AsSpan(0, S));
        a.KvTable.AsContiguous().SubView(0, table).CopyFromCPU(a.HostKvTable.AsSpan(0, table));
        // the pages Sync issued on the mirrors' copy streams (while the tables above went up) land before the first kernel
        kvMirror!.WaitUploads();
        if (adapterMirror is not null && !ReferenceEquals(adapterMirror, kvMirror)) adapterMirror.WaitUploads();

        var k = _k;
        var w = _w;
        var pages = kvMirror!.Pages;
        ArrayView<int> kvTable = a.KvTable.View;
        float eps = (float)c.RmsNormEps;
        var rope = new RopeShape(c.NumHeads, c.NumKvHeads, c.HeadDim);
        var att = new AttentionShape(c.NumHeads, c.NumKvHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim));
        int bs = kvMirror.Pool.PageFloats / kvDim;

        k.Embed(a.X, w.Embedding, a.Tokens, T);
        for (int l = 0; l < c.NumLayers; l++)
        {
            var L = w.Layers[l];
            var kv = new PagedKvShape(l, c.NumLayers, bs, kvDim, kvMirror.Pool.PageFloats);

            // attention: xb = norm(x); q, k, v = one launch over the stacked projections (+ bias; + LoRA); rope and the
            // KV write in one launch; attend; x += o(att) (the residual add in the matmul's store)
            k.RmsNorm(a.Xb, a.X, L.AttnNorm.View, dim, eps, T);
            k.MatMulSplit(a.Q, a.K, a.V, L.QkvBias?.View, a.Xb, L.Qkv, T, qDim, qDim + kvDim);
            Lora(a, adapterMirror, a.Q, a.Xb, dim, qDim, l, LoraTarget.QProj, T, maxRank);
            Lora(a, adapterMirror, a.K, a.Xb, dim, kvDim, l, LoraTarget.KProj, T, maxRank);
            Lora(a, adapterMirror, a.V, a.Xb, dim, kvDim, l, LoraTarget.VProj, T, maxRank);
            k.RopeWriteKv(a.Q, a.K, a.V, pages, kvTable, a.TableOffset, a.Positions, w.RopeCos.View, w.RopeSin.View, T, kv, rope);
            k.Attention(a.Att, a.Q, pages, kvTable, a.TableOffset, a.Lengths, T, kv, att);
            k.MatMul(a.X, a.Att, L.O, T, accumulate: true);
            Lora(a, adapterMirror, a.X, a.Att, qDim, dim, l, LoraTarget.OProj, T, maxRank);

            // mlp: x += down(silu(gate(norm(x))) · up(norm(x)))
            k.RmsNorm(a.Xb, a.X, L.MlpNorm.View, dim, eps, T);
            k.MatMulSplit(a.Hb, a.Hb2, a.Hb2, null, a.Xb, L.GateUp, T, hidden, 2 * hidden);
            Lora(a, adapterMirror, a.Hb, a.Xb, dim, hidden, l, LoraTarget.GateProj, T, maxRank);
            Lora(a, adapterMirror, a.Hb2, a.Xb, dim, hidden, l, LoraTarget.UpProj, T, maxRank);
            k.SiluMul(a.Hb, a.Hb, a.Hb2, T * hidden);
            k.MatMul(a.X, a.Hb, L.Down, T, accumulate: true);
            Lora(a, adapterMirror, a.X, a.Hb, hidden, dim, l, LoraTarget.DownProj, T, maxRank);
        }

        if (mode == LogitsMode.HiddenStates) k.RmsNorm(a.Xb, a.X, w.FinalNorm.View, dim, eps, T);
        else if (mode == LogitsMode.AllPositions)
        {
            k.RmsNorm(a.Xb, a.X, w.FinalNorm.View, dim, eps, T);
            k.MatMul(a.Logits, a.Xb, w.LmHead, T);
        }
        else
        {
            k.GatherRows(a.Last, a.X, a.LastIndex, dim, S);
            k.RmsNorm(a.Last, a.Last, w.FinalNorm.View, dim, eps, S);
            k.MatMul(a.Logits, a.Last, w.LmHead, S);
        }
        return a;
    }

    /// <summary>The new keys and values stay on the device: their pages are marked newer there than on the host, which
    /// asks for them when it reads them (<see cref="DevicePoolMirror.ToHost"/>); then the caches advance.</summary>
    private void Finish(ForwardState s)
    {
        _device.Accelerator.DefaultStream.Synchronize(); // the step's kernels (not the swap-outs' copies, which may still run)
        int layers = _c.NumLayers;
        var mirror = _mirrors[((PagedKvCache)s.SeqCache[0]).Pool];
        for (int t = 0; t < s.TokenCount; t++)
        {
            var cache = (PagedKvCache)s.TokenCache[t];
            var table = cache.PageTable;
            int block = s.Positions[t] / cache.BlockSize;
            for (int l = 0; l < layers; l++)
            {
                mirror.Written(table[(block * layers + l) * 2]);
                mirror.Written(table[(block * layers + l) * 2 + 1]);
            }
        }
        for (int i = 0; i < s.SequenceCount; i++) s.SeqCache[i].Advance(s.SeqCount[i]);
    }

    private void Lora(DeviceActivations a, DevicePoolMirror? mirror, ArrayView<float> y, ArrayView<float> x, int inDim, int outDim,
        int layer, LoraTarget target, int tokens, int maxRank)
    {
        if (mirror is null || maxRank == 0) return;
        var shape = new LoraShape(inDim, outDim, maxRank, layer, (int)target, _c.NumLayers, LoraTargets.Count, mirror.Pool.PageFloats);
        _k.LoraShrink(a.LoraScratch, x, mirror.Pages, _adapters!.Arena, _adapters.Modules, a.TokenSlot, tokens, shape);
        _k.LoraExpand(y, a.LoraScratch, mirror.Pages, _adapters.Arena, _adapters.Modules, _adapters.Scales, a.TokenSlot, tokens, shape);
    }

    private DeviceActivations State(ForwardState s)
    {
        if (_states.TryGetValue(s, out var a)) return a;
        a = new DeviceActivations(_device.Accelerator, _c, s);
        _states.Add(s, a);
        lock (_allStates) _allStates.Add(a);
        return a;
    }

    private DevicePoolMirror Mirror(PagePool pool)
    {
        if (_mirrors.TryGetValue(pool, out var m)) return m;
        m = new DevicePoolMirror(_device.Accelerator, pool, Transfers) { LazyCopies = _lazyCopies };
        _mirrors.Add(pool, m);
        return m;
    }

    public void Dispose()
    {
        lock (_allStates)
        {
            foreach (var a in _allStates) a.Dispose();
            _allStates.Clear();
        }
        foreach (var m in _mirrors.Values) m.Dispose();
        _mirrors.Clear();
        _adapters?.Dispose();
        _w.Dispose();
        _ownPool?.Dispose();
        _device.Dispose();
    }
}
