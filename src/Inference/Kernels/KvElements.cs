using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Loom.Inference.Model;

namespace Loom.Inference.Kernels;

/// <summary>How the attention kernels load key and value elements of a block (its memory as bytes) as float32, and the LoRA
/// kernels the elements of adapter pages (<see cref="Memory.AdapterPageFormat"/>): the
/// kernels are written once, generic over this, and the JIT compiles one copy per format with the loads inlined. A bf16
/// element widens exactly (its 16 bits become the high half of a float), so a kernel over a bf16 cache does the same
/// arithmetic, in the same order, as over an f32 cache holding the rounded values.</summary>
internal unsafe interface IKvElements
{
    /// <summary>Elements [i, i + 8) of the row at <paramref name="p"/>.</summary>
    static abstract Vector256<float> Load256(byte* p, int i);
    /// <summary>Elements [i, i + 16) of the row at <paramref name="p"/>.</summary>
    static abstract Vector512<float> Load512(byte* p, int i);
    static abstract float Load(byte* p, int i);
    /// <summary>Bytes of an element.</summary>
    static abstract int Size { get; }
}

internal readonly unsafe struct F32Kv : IKvElements
{
    public static int Size => sizeof(float);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(byte* p, int i) => Vector256.Load((float*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(byte* p, int i) => Vector512.Load((float*)p + i);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* p, int i) => ((float*)p)[i];
}

/// <summary>bfloat16 elements: zero-extended to 32 bits and shifted left 16 (vpmovzxwd and vpslld where the CPU has
/// AVX2; the same portable widening the bf16 weight kernels use).</summary>
internal readonly unsafe struct Bf16Kv : IKvElements
{
    public static int Size => sizeof(ushort);
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(byte* p, int i) =>
        Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load((ushort*)p + i).ToVector256Unsafe()), 16).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(byte* p, int i) =>
        Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load((ushort*)p + i).ToVector512Unsafe()), 16).AsSingle();
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(byte* p, int i) => BitConverter.Int32BitsToSingle(((ushort*)p)[i] << 16);
}

internal static unsafe class KvBlocks
{
    /// <summary>The (BlockSize, KvDim) keys of one layer's block as bytes, in the cache's format.</summary>
    public static Span<byte> Keys(IKvCache cache, int layer, int block) => cache.Format == KvCacheFormat.Bf16
        ? MemoryMarshal.AsBytes(cache.Keys16(layer, block))
        : MemoryMarshal.AsBytes(cache.Keys(layer, block));

    /// <summary>The (BlockSize, KvDim) values of one layer's block as bytes, in the cache's format.</summary>
    public static Span<byte> Values(IKvCache cache, int layer, int block) => cache.Format == KvCacheFormat.Bf16
        ? MemoryMarshal.AsBytes(cache.Values16(layer, block))
        : MemoryMarshal.AsBytes(cache.Values(layer, block));

    [ThreadStatic] private static nint[]? _rows;

    /// <summary>The addresses of one KV head's rows (<paramref name="headDim"/> elements from kvHead · headDim) at
    /// positions [0, length) of one layer: the keys' at [0, length), the values' at [length, 2 · length), in this thread's
    /// pinned buffer (valid until its next call). One interface call per block here, so the kernels' loops run over
    /// positions without calls. The caches' blocks do not move (<see cref="IKvCache"/>).</summary>
    public static byte** HeadRows(IKvCache cache, int layer, int kvHead, int headDim, int length)
    {
        byte** rows = RowBuffer(ref _rows, 2 * length);
        FillRows(cache, layer, kvHead, headDim, length, rows, rows + length);
        return rows;
    }

    /// <summary>Room for at least <paramref name="count"/> row addresses in a pinned buffer (grown when too small, to
    /// at least 1,024), so its address is stable for the pointer returned.</summary>
    public static byte** RowBuffer(ref nint[]? buffer, int count)
    {
        if (buffer == null || buffer.Length < count) buffer = GC.AllocateArray<nint>(Math.Max(count, 1024), pinned: true);
        return (byte**)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
    }

    /// <summary>The addresses of one KV head's value rows at positions [0, length) of one layer into
    /// <paramref name="values"/> (a prefill's tokens share them: made once per run and KV head, not once per token).</summary>
    public static void ValueRows(IKvCache cache, int layer, int kvHead, int headDim, int length, byte** values) =>
        FillRows(cache, layer, kvHead, headDim, length, null, values);

    /// <summary>Key rows into keys (unless null) and value rows into values, positions [0, length).</summary>
    private static void FillRows(IKvCache cache, int layer, int kvHead, int headDim, int length, byte** keys, byte** values)
    {
        int bs = cache.BlockSize, size = cache.Format.ElementBytes(), rowBytes = cache.KvDim * size, offset = kvHead * headDim * size;
        for (int j0 = 0, block = 0; j0 < length; j0 += bs, block++)
        {
            byte* v = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(Values(cache, layer, block))) + offset;
            int n = Math.Min(bs, length - j0);
            for (int r = 0; r < n; r++) values[j0 + r] = v + r * rowBytes;
            if (keys == null) continue;
            byte* k = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(Keys(cache, layer, block))) + offset;
            for (int r = 0; r < n; r++) keys[j0 + r] = k + r * rowBytes;
        }
    }

    /// <summary>Keys and values ahead of use: the rows at this distance are asked for (<see cref="Prefetch64{T}"/>) while
    /// the kernel works on the current one.</summary>
    public const int PrefetchAhead = 8;

    /// <summary>Asks for the 64-element head row at rows[min(j, last)] (4 lines in f32, 2 in bf16). A pool page holds only
    /// a few positions and pages lie anywhere in the pool, so the hardware's stream prefetchers do not see a head's rows as
    /// one stream. Measured on a Zen 3 EPYC: about 10% less time for one KV group over pool pages of 3 positions at
    /// contexts of 512-2048 (`engine attention`); no difference beyond the noise in whole decode steps after 1,024-token
    /// prompts. Clamped to the last row, so the address array is never read past its end; changes no arithmetic.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Prefetch64<T>(byte** rows, int j, int last) where T : struct, IKvElements
    {
        if (!Sse.IsSupported) return;
        byte* r = rows[Math.Min(j, last)];
        Sse.Prefetch0(r);
        Sse.Prefetch0(r + 64);
        if (T.Size == sizeof(float))
        {
            Sse.Prefetch0(r + 128);
            Sse.Prefetch0(r + 192);
        }
    }

    /// <summary><see cref="VecOps.Dot"/> with b read as <typeparamref name="T"/>: the same operations in the same order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot<T>(float* a, byte* b, int n, SimdLevel level) where T : struct, IKvElements
    {
        int k = 0;
        float s = 0;
        if (level == SimdLevel.Vector512 && n >= 16)
        {
            var acc = Vector512<float>.Zero;
            for (; k + 16 <= n; k += 16) acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + k), T.Load512(b, k), acc);
            s = Vector512.Sum(acc);
        }
        else if (level != SimdLevel.Scalar && n >= 8)
        {
            var acc = Vector256<float>.Zero;
            for (; k + 8 <= n; k += 8) acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + k), T.Load256(b, k), acc);
            s = Vector256.Sum(acc);
        }
        for (; k < n; k++) s += a[k] * T.Load(b, k);
        return s;
    }

    /// <summary><see cref="VecOps.Axpy"/> (y += a · x) with x read as <typeparamref name="T"/>: the same operations in the
    /// same order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy<T>(float* y, byte* x, float a, int n, SimdLevel level) where T : struct, IKvElements
    {
        int k = 0;
        if (level == SimdLevel.Vector512)
        {
            var av = Vector512.Create(a);
            for (; k + 16 <= n; k += 16) Vector512.FusedMultiplyAdd(T.Load512(x, k), av, Vector512.Load(y + k)).Store(y + k);
        }
        else if (level != SimdLevel.Scalar)
        {
            var av = Vector256.Create(a);
            for (; k + 8 <= n; k += 8) Vector256.FusedMultiplyAdd(T.Load256(x, k), av, Vector256.Load(y + k)).Store(y + k);
        }
        for (; k < n; k++) y[k] += a * T.Load(x, k);
    }
}
