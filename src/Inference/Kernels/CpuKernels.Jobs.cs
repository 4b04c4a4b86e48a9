using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

public sealed unsafe partial class CpuKernels
{
    /// <summary>Attention of a prefill run of one sequence against its transposed keys: chunk c takes items c,
    /// c + chunks, ... (item = token × head; round-robin, since causal rows grow with position) with scratch row c.</summary>
    private sealed class PrefillAttentionJob : PoolJob
    {
        public IKvCache? Cache;
        private float* _out, _q, _scratch, _keysT;
        private int* _lengths;
        private int _t0, _chunks, _items, _groups, _blocks, _heads, _headDim, _layer, _row, _keysTLength;

        public void Set(in AttentionBatch b, float* output, float* q, float* scratch, float* keysT, int* lengths,
            int t0, int chunks, int items, int groups, int blocks)
        {
            Cache = b.Caches[t0];
            _out = output; _q = q; _scratch = scratch; _keysT = keysT; _lengths = lengths;
            (_t0, _chunks, _items, _groups, _blocks) = (t0, chunks, items, groups, blocks);
            (_heads, _headDim, _layer, _row, _keysTLength) = (b.Heads, b.HeadDim, b.Layer, b.ScratchRowLength, b.KeysT.Length);
        }

        public override void Execute(int c)
        {
            var scores = new Span<float>(_scratch + (long)c * _row, _row);
            var keysT = new ReadOnlySpan<float>(_keysT, _keysTLength);
            for (int i = c; i < _items; i += _chunks)
            {
                int t = _t0 + i / _heads, h = i % _heads;
                var qh = new ReadOnlySpan<float>(_q + ((long)t * _heads + h) * _headDim, _headDim);
                var oh = new Span<float>(_out + ((long)t * _heads + h) * _headDim, _headDim);
                Kernels.Attention.HeadTransposed(oh, qh, keysT, _blocks, Cache!, _layer, h / _groups, _lengths[t], scores);
            }
        }
    }

    /// <summary>Attention of single tokens (decode, short runs) over their own caches: chunk c takes items c,
    /// c + chunks, ... with scratch row c; tokens marked in skip were done by a prefill run. An item is one query head,
    /// or, when grouped, all query heads of one KV head on one core: blocked (<see cref="Kernels.Attention.Group64"/>,
    /// scratch rows c · groups onwards), their keys and values are read once for the group; otherwise one head after
    /// another, the group's keys and values coming from the core's cache for all but the first. Each head's arithmetic is
    /// the same in all three cases, so the results are bitwise equal.</summary>
    private sealed class PerTokenAttentionJob : PoolJob
    {
        public IKvCache[]? Caches;
        private float* _out, _q, _scratch;
        private int* _lengths;
        private bool* _skip;
        private int _chunks, _items, _groups, _heads, _headDim, _layer, _row, _perItem;
        private bool _blocked;
        private SimdLevel _level;

        public void Set(in AttentionBatch b, float* output, float* q, float* scratch, int* lengths, bool* skip,
            int chunks, int items, int groups, bool grouped, bool blocked, SimdLevel level)
        {
            Caches = b.Caches;
            _out = output; _q = q; _scratch = scratch; _lengths = lengths; _skip = skip;
            (_chunks, _items, _groups, _level, _perItem, _blocked) = (chunks, items, groups, level, grouped ? groups : 1, blocked);
            (_heads, _headDim, _layer, _row) = (b.Heads, b.HeadDim, b.Layer, b.ScratchRowLength);
        }

        public override void Execute(int c)
        {
            int rows = _blocked ? _groups : 1;
            var scores = new Span<float>(_scratch + (long)c * rows * _row, rows * _row);
            var caches = Caches!;
            int itemsPerToken = _heads / _perItem;
            for (int i = c; i < _items; i += _chunks)
            {
                int t = i / itemsPerToken;
                if (_skip[t]) continue;
                int length = _lengths[t];
                int h0 = i % itemsPerToken * _perItem;
                if (_blocked)
                {
                    long at = ((long)t * _heads + h0) * _headDim;
                    Kernels.Attention.Group64(new Span<float>(_out + at, _groups * _headDim), new ReadOnlySpan<float>(_q + at, _groups * _headDim),
                        _groups, caches[t], _layer, h0 / _groups, length, scores, _row);
                    continue;
                }
                for (int h = h0, end = h + _perItem; h < end; h++)
                {
                    var qh = new ReadOnlySpan<float>(_q + ((long)t * _heads + h) * _headDim, _headDim);
                    var oh = new Span<float>(_out + ((long)t * _heads + h) * _headDim, _headDim);
                    if (_level == SimdLevel.Scalar) Kernels.Attention.NaiveHead(oh, qh, caches[t], _layer, h / _groups, length);
                    else Kernels.Attention.Head(oh, qh, caches[t], _layer, h / _groups, length, scores, _level);
                }
            }
        }
    }
}
