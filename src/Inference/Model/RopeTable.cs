namespace Loom.Inference.Model;

/// <summary>Precomputed RoPE cos/sin per position: (positions, headDim/2) each, in the HF convention
/// inv_freq[i] = theta^(-2i/headDim), with llama3 frequency scaling when configured.</summary>
public sealed class RopeTable
{
    private readonly float[] _cos; // (positions, half)
    private readonly float[] _sin; // (positions, half)
    private readonly int _half;

    public int Positions { get; }

    public RopeTable(ModelConfig config, int positions)
    {
        _half = config.HeadDim / 2;
        Positions = positions;
        var inv = InverseFrequencies(config);
        _cos = new float[positions * _half];
        _sin = new float[positions * _half];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < _half; i++)
            {
                double a = p * inv[i];
                _cos[p * _half + i] = (float)Math.Cos(a);
                _sin[p * _half + i] = (float)Math.Sin(a);
            }
    }

    public static double[] InverseFrequencies(ModelConfig config)
    {
        int half = config.HeadDim / 2;
        var inv = new double[half];
        for (int i = 0; i < half; i++) inv[i] = 1.0 / Math.Pow(config.RopeTheta, 2.0 * i / config.HeadDim);
        if (config.RopeScaling is { } s)
        {
            double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
            double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
            for (int i = 0; i < half; i++)
            {
                double wavelen = 2 * Math.PI / inv[i];
                if (wavelen < highWavelen) continue;                       // high frequencies kept
                if (wavelen > lowWavelen) { inv[i] /= s.Factor; continue; } // low frequencies slowed
                double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                inv[i] = (1 - smooth) * inv[i] / s.Factor + smooth * inv[i];
            }
        }
        return inv;
    }

    public ReadOnlySpan<float> Cos(int position) => _cos.AsSpan(Check(position) * _half, _half);
    public ReadOnlySpan<float> Sin(int position) => _sin.AsSpan(Check(position) * _half, _half);

    private int Check(int position) =>
        (uint)position < (uint)Positions ? position
        : throw new InvalidOperationException($"position {position} is beyond the context limit of {Positions}");
}
