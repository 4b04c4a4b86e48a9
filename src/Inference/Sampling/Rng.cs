namespace Loom.Inference.Sampling;

/// <summary>xoshiro256** seeded through SplitMix64: a fixed, documented generator so that a seed gives the
/// same tokens on every machine and runtime version.</summary>
public sealed class Rng
{
    private ulong _s0, _s1, _s2, _s3;

    public Rng(ulong seed)
    {
        _s0 = SplitMix(ref seed);
        _s1 = SplitMix(ref seed);
        _s2 = SplitMix(ref seed);
        _s3 = SplitMix(ref seed);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>The generator's state (four words), to continue it later with <see cref="FromState"/>.</summary>
    public ulong[] GetState() => [_s0, _s1, _s2, _s3];

    public static Rng FromState(ReadOnlySpan<ulong> state)
    {
        if (state.Length != 4 || (state[0] | state[1] | state[2] | state[3]) == 0) throw new ArgumentException("an Rng state is four words, not all zero");
        var r = new Rng(0);
        (r._s0, r._s1, r._s2, r._s3) = (state[0], state[1], state[2], state[3]);
        return r;
    }

    /// <summary>Uniform in [0, n) (n ≥ 1), without modulo bias.</summary>
    public int NextInt(int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        ulong bound = (ulong)n, limit = ulong.MaxValue - ulong.MaxValue % bound;
        ulong x;
        do x = NextUInt64(); while (x >= limit);
        return (int)(x % bound);
    }

    /// <summary>Uniform in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
