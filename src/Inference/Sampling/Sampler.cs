using Loom.Inference.Kernels;

namespace Loom.Inference.Sampling;

/// <summary>Chooses the next token from a row of logits. One per sequence (it owns the random stream);
/// its scratch is sized once for the vocabulary.</summary>
public sealed class Sampler
{
    private readonly SamplingParams _p;
    private readonly Rng _rng;
    private readonly float[] _probs;   // (vocab)
    private readonly int[] _index;     // (vocab) candidate token ids
    private readonly float[] _keys;    // (vocab) sort keys

    public Sampler(SamplingParams p, int vocabSize)
    {
        p.Validate();
        _p = p;
        _rng = new Rng(p.Seed ?? (ulong)Random.Shared.NextInt64());
        _probs = new float[vocabSize];
        _index = new int[vocabSize];
        _keys = new float[vocabSize];
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_p.Temperature == 0) return Ops.Argmax(logits);
        int v = logits.Length;
        int n;
        // candidates, most likely first when a filter needs the order
        if (_p.TopK > 0 && _p.TopK < v)
            n = Ops.TopK(_index, logits, _p.TopK);
        else
        {
            n = 0;
            for (int i = 0; i < v; i++) if (!float.IsNaN(logits[i])) _index[n++] = i;
            if (_p.TopP < 1)
            {
                for (int i = 0; i < n; i++) _keys[i] = -logits[_index[i]];
                Array.Sort(_keys, _index, 0, n);
            }
        }
        if (n == 0) return Ops.Argmax(logits);
        // softmax(logits / T) over the candidates
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = Math.Max(max, logits[_index[i]]);
        double sum = 0;
        float invT = 1f / _p.Temperature;
        for (int i = 0; i < n; i++) sum += _probs[i] = MathF.Exp((logits[_index[i]] - max) * invT);
        for (int i = 0; i < n; i++) _probs[i] = (float)(_probs[i] / sum);
        // top-p: the sorted prefix whose mass reaches p (always at least one token)
        if (_p.TopP < 1)
        {
            double cum = 0;
            int keep = 0;
            while (keep < n && cum < _p.TopP) cum += _probs[keep++];
            n = Math.Max(1, keep);
        }
        // min-p: relative to the most likely remaining token
        if (_p.MinP > 0)
        {
            float best = 0;
            for (int i = 0; i < n; i++) best = Math.Max(best, _probs[i]);
            float threshold = _p.MinP * best;
            int m = 0;
            for (int i = 0; i < n; i++)
                if (_probs[i] >= threshold) { _index[m] = _index[i]; _probs[m] = _probs[i]; m++; }
            n = m;
        }
        double total = 0;
        for (int i = 0; i < n; i++) total += _probs[i];
        double r = _rng.NextDouble() * total;
        double acc = 0;
        for (int i = 0; i < n; i++)
        {
            acc += _probs[i];
            if (r < acc) return _index[i];
        }
        return _index[n - 1];
    }

    /// <summary>log-softmax of the raw logits at <paramref name="token"/>, with the <paramref name="top"/> most likely tokens.</summary>
    public static TokenLogprobs Logprobs(ReadOnlySpan<float> logits, int token, int top)
    {
        float max = float.NegativeInfinity;
        foreach (float x in logits) if (x > max) max = x;
        double sum = 0;
        foreach (float x in logits) sum += Math.Exp(x - max);
        float logZ = max + (float)Math.Log(sum);
        var alternatives = new TokenAlternative[top];
        if (top > 0)
        {
            var idx = new int[top];
            int n = Ops.TopK(idx, logits, top);
            alternatives = new TokenAlternative[n];
            for (int i = 0; i < n; i++) alternatives[i] = new TokenAlternative(idx[i], logits[idx[i]] - logZ);
        }
        return new TokenLogprobs(token, logits[token] - logZ, alternatives);
    }
}
