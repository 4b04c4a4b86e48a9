using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

public sealed unsafe partial class CpuKernels
{
    [ThreadStatic] private static NormJob? _normJob;
    [ThreadStatic] private static RopeJob? _ropeJob;

    /// <summary>RMSNorm of rows [c · <see cref="RowsPerChunk"/>, ...) of chunk c.</summary>
    private sealed class NormJob : PoolJob
    {
        private float* _y, _x, _weight;
        private int _dim, _rows;
        private float _eps;

        public void Set(float* y, float* x, float* weight, int dim, float eps, int rows)
        {
            _y = y; _x = x; _weight = weight;
            (_dim, _eps, _rows) = (dim, eps, rows);
        }

        public override void Execute(int chunk)
        {
            var weight = new ReadOnlySpan<float>(_weight, _dim);
            for (int i = chunk * RowsPerChunk, end = Math.Min(_rows, i + RowsPerChunk); i < end; i++)
                Ops.RmsNorm(new Span<float>(_y + (long)i * _dim, _dim), new ReadOnlySpan<float>(_x + (long)i * _dim, _dim), weight, _eps);
        }
    }

    /// <summary>RoPE on each token's query and key heads at its position, then its key and value rows written to its
    /// cache (tokens write distinct rows, so chunks of tokens run side by side).</summary>
    private sealed class RopeJob : PoolJob
    {
        private float* _q, _k, _v;
        private int* _positions;
        private IKvCache[]? _caches;
        private RopeTable? _rope;
        private int _tokens, _heads, _kvHeads, _headDim, _layer;

        public void Set(float* q, float* k, float* v, int* positions, IKvCache[] caches, int tokens, int heads, int kvHeads,
            int headDim, int layer, RopeTable rope)
        {
            _q = q; _k = k; _v = v; _positions = positions;
            (_caches, _rope) = (caches, rope);
            (_tokens, _heads, _kvHeads, _headDim, _layer) = (tokens, heads, kvHeads, headDim, layer);
        }

        /// <summary>Drops the references to the caches and the table once the pass is over.</summary>
        public void Release() => (_caches, _rope) = (null, null);

        public override void Execute(int chunk) => Rows(chunk * RowsPerChunk, Math.Min(_tokens, (chunk + 1) * RowsPerChunk));

        public void Rows(int t0, int t1)
        {
            int qDim = _heads * _headDim, kvDim = _kvHeads * _headDim;
            for (int t = t0; t < t1; t++)
            {
                int pos = _positions[t];
                var cos = _rope!.Cos(pos);
                var sin = _rope.Sin(pos);
                var key = new Span<float>(_k + (long)t * kvDim, kvDim);
                Ops.Rope(new Span<float>(_q + (long)t * qDim, qDim), _heads, _headDim, cos, sin);
                Ops.Rope(key, _kvHeads, _headDim, cos, sin);
                _caches![t].Write(_layer, pos, key, new ReadOnlySpan<float>(_v + (long)t * kvDim, kvDim));   // bf16: rounded
            }
        }
    }

    /// <summary>Attention of a prefill run of one sequence against its transposed keys: chunk c takes items c,
    /// c + chunks, ... (round-robin, since causal rows grow with position). An item is one token's query head with scratch
    /// row c, or, grouped (heads of 64), one token's query heads of a KV head (<see cref="Kernels.Attention.GroupTransposed"/>)
    /// with scratch rows c · groups onwards; the outputs are bitwise the same either way.</summary>
    private sealed class PrefillAttentionJob : PoolJob
    {
        public IKvCache? Cache;
        private float* _out, _q, _scratch, _keysT;
        private int* _lengths;
        private byte** _valueRows;   // grouped: per KV head, _rowsPerHead value row addresses
        private int _t0, _chunks, _items, _groups, _blocks, _heads, _headDim, _layer, _row, _keysTLength, _rowsPerHead;
        private bool _grouped;

        public void Set(in AttentionBatch b, float* output, float* q, float* scratch, float* keysT, int* lengths,
            byte** valueRows, int rowsPerHead, int t0, int chunks, int items, int groups, int blocks, bool grouped)
        {
            Cache = b.Caches[t0];
            _out = output; _q = q; _scratch = scratch; _keysT = keysT; _lengths = lengths; _valueRows = valueRows;
            _rowsPerHead = rowsPerHead;
            (_t0, _chunks, _items, _groups, _blocks, _grouped) = (t0, chunks, items, groups, blocks, grouped);
            (_heads, _headDim, _layer, _row, _keysTLength) = (b.Heads, b.HeadDim, b.Layer, b.ScratchRowLength, b.KeysT.Length);
        }

        public override void Execute(int c)
        {
            var keysT = new ReadOnlySpan<float>(_keysT, _keysTLength);
            if (_grouped)
            {
                int kvHeads = _heads / _groups;
                float* rows = _scratch + (long)c * _groups * _row;
                var format = Cache!.Format;
                for (int i = c; i < _items; i += _chunks)
                {
                    int t = _t0 + i / kvHeads, g = i % kvHeads;
                    long at = ((long)t * _heads + g * _groups) * 64;
                    Kernels.Attention.GroupTransposed(_out + at, _q + at, _groups, keysT, _blocks, format, g,
                        _valueRows + (long)g * _rowsPerHead, _lengths[t], rows, _row);
                }
                return;
            }
            var scores = new Span<float>(_scratch + (long)c * _row, _row);
            for (int i = c; i < _items; i += _chunks)
            {
                int t = _t0 + i / _heads, h = i % _heads;
                var qh = new ReadOnlySpan<float>(_q + ((long)t * _heads + h) * _headDim, _headDim);
                var oh = new Span<float>(_out + ((long)t * _heads + h) * _headDim, _headDim);
                Kernels.Attention.HeadTransposed(oh, qh, keysT, _blocks, Cache!, _layer, h / _groups, _lengths[t], scores);
            }
        }
    }

    /// <summary>An attention job over the batch's caches, one per token (<see cref="RunChunks"/> drops them after the run).</summary>
    private abstract class BatchCachesJob : PoolJob
    {
        public IKvCache[]? Caches;
    }

    /// <summary>Attention of single tokens (decode, short runs) over their own caches: chunk c takes items c,
    /// c + chunks, ... with scratch row c; tokens marked in skip were done by a prefill run. An item is one query head,
    /// or, when grouped, all query heads of one KV head on one core: blocked (<see cref="Kernels.Attention.Group64"/>,
    /// scratch rows c · groups onwards), their keys and values are read once for the group; otherwise one head after
    /// another, the group's keys and values coming from the core's cache for all but the first. Each head's arithmetic is
    /// the same in all three cases, so the results are bitwise equal.</summary>
    private sealed class PerTokenAttentionJob : BatchCachesJob
    {
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

    /// <summary>Attention at 256 bits with heads of 64 (<see cref="Kernels.Attention.Queries64x256"/>): an item is one KV
    /// head of a block of up to <see cref="QueryBlockTokens"/> consecutive tokens of one sequence, all the group's query
    /// heads of those tokens together; items are KV-head-major (a chunk's items share the KV head's rows in its core's
    /// cache); chunk c takes items c, c + chunks, ... with score rows c · rowsPerChunk onwards.</summary>
    private sealed class QueryBlockAttentionJob : BatchCachesJob
    {
        private float* _out, _q, _scratch;
        private int* _lengths, _bounds;
        private int _chunks, _items, _blocks, _groups, _heads, _layer, _row, _rowsPerChunk;

        public void Set(in AttentionBatch b, float* output, float* q, float* scratch, int* lengths, int* bounds, int blocks,
            int chunks, int groups, int rowsPerChunk)
        {
            Caches = b.Caches;
            _out = output; _q = q; _scratch = scratch; _lengths = lengths; _bounds = bounds;
            (_blocks, _chunks, _items, _groups, _rowsPerChunk) = (blocks, chunks, blocks * b.KvHeads, groups, rowsPerChunk);
            (_heads, _layer, _row) = (b.Heads, b.Layer, b.ScratchRowLength);
        }

        public override void Execute(int c)
        {
            float** qs = stackalloc float*[_rowsPerChunk];
            float** os = stackalloc float*[_rowsPerChunk];
            int* lens = stackalloc int[_rowsPerChunk];
            float* rows = _scratch + (long)c * _rowsPerChunk * _row;
            for (int i = c; i < _items; i += _chunks)
            {
                int g = i / _blocks, blk = i % _blocks, t0 = _bounds[2 * blk], t1 = _bounds[2 * blk + 1], m = 0;
                for (int t = t0; t < t1; t++)
                    for (int h = g * _groups, end = h + _groups; h < end; h++, m++)
                    {
                        long at = ((long)t * _heads + h) * 64;
                        qs[m] = _q + at;
                        os[m] = _out + at;
                        lens[m] = _lengths[t];
                    }
                Kernels.Attention.Queries64x256(qs, os, lens, m, Caches![t0], _layer, g, rows, _row);
            }
        }
    }
}
