using Loom.Inference.Constrained;
using Loom.Inference.Kernels;

namespace Loom.Inference.Sampling;

/// <summary>Chooses the next token from a row of logits. One per sequence (it owns the random stream, the counts of
/// what it generated and the grammar's state); its scratch is sized once for the vocabulary.</summary>
public sealed class Sampler
{
    private readonly SamplingParams _p;
    private readonly Rng _rng;
    private readonly float[] _probs;   // (vocab)
    private readonly int[] _index;     // (vocab) candidate token ids
    private readonly float[] _keys;    // (vocab) sort keys
    private readonly float[]? _adjusted;        // (vocab) the logits after bias, penalties and mask; null when none apply
    private readonly Dictionary<int, int> _generated = [];  // token id → times generated (presence / frequency)
    private readonly HashSet<int> _seen = [];               // prompt and generated ids (repetition penalty)
    private readonly TokenConstraint? _constraint;

    public Sampler(SamplingParams p, int vocabSize, TokenConstraint? constraint = null, IEnumerable<int>? prompt = null)
    {
        p.Validate();
        if (p.Grammar is not null && constraint is null) throw new ArgumentException("a grammar needs the constraint built for the model's vocabulary", nameof(constraint));
        if (p.LogitBias.Keys.Any(id => id >= vocabSize)) throw new ArgumentException($"logit_bias names a token id past the vocabulary ({vocabSize} ids)");
        _p = p;
        _rng = new Rng(p.Seed ?? (ulong)Random.Shared.NextInt64());
        _probs = new float[vocabSize];
        _index = new int[vocabSize];
        _keys = new float[vocabSize];
        _constraint = constraint;
        if (p.LogitBias.Count > 0 || p.PresencePenalty != 0 || p.FrequencyPenalty != 0 || p.RepetitionPenalty != 1 || constraint is not null)
            _adjusted = new float[vocabSize];
        if (p.RepetitionPenalty != 1 && prompt is not null) _seen.UnionWith(prompt);
    }

    /// <summary>The grammar's value is complete: the sequence should end.</summary>
    public bool Done => _constraint?.IsDone == true;

    /// <summary>The next token, or -1 when the grammar allows none (never with a complete vocabulary).</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_adjusted is not null)
        {
            logits.CopyTo(_adjusted);
            if (Adjust(_adjusted) == 0) return -1;
            logits = _adjusted;
        }
        return Choose(logits);
    }

    /// <summary>Records the token chosen (by <see cref="Sample"/>): counts for the penalties, the grammar's next state.</summary>
    public void Accept(int token)
    {
        if (_adjusted is null) return;
        _generated[token] = _generated.GetValueOrDefault(token) + 1;
        if (_p.RepetitionPenalty != 1) _seen.Add(token);
        if (_constraint is not null && !_constraint.Accept(token))
            throw new InvalidOperationException($"token {token} is not allowed by the grammar here");
    }

    /// <summary>Bias, penalties, then the grammar's mask, in place. Returns how many tokens the mask allows (the
    /// vocabulary size without a grammar).</summary>
    private int Adjust(Span<float> x)
    {
        foreach (var (id, bias) in _p.LogitBias) x[id] += bias;
        if (_p.RepetitionPenalty != 1)
            foreach (int id in _seen)
                if ((uint)id < (uint)x.Length) x[id] = x[id] > 0 ? x[id] / _p.RepetitionPenalty : x[id] * _p.RepetitionPenalty;
        if (_p.PresencePenalty != 0 || _p.FrequencyPenalty != 0)
            foreach (var (id, count) in _generated)
                if ((uint)id < (uint)x.Length) x[id] -= _p.PresencePenalty + _p.FrequencyPenalty * count;
        return _constraint?.Mask(x) ?? x.Length;
    }

    private int Choose(ReadOnlySpan<float> logits)
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
        for (int i = n - 1; i > 0; i--) if (_probs[i] > 0) return _index[i]; // rounding left r at the very end: the last token with mass
        return _index[0];
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
