using Loom.Inference.Constrained;
using Loom.Inference.Kernels;

namespace Loom.Inference.Sampling;

/// <summary>Chooses the next token from a row of logits. One per sequence (it owns the random stream, the counts of
/// what it generated and the grammar's state); its vocabulary-sized scratch belongs to the calling thread, shared by
/// every sampler that thread runs, so a new request allocates no vocabulary-sized arrays and a step allocates nothing.</summary>
public sealed class Sampler
{
    /// <summary>Scratch of one thread, grown to the largest vocabulary it has sampled.</summary>
    private sealed class Scratch
    {
        public float[] Probs = [];     // (vocab)
        public int[] Index = [];       // (vocab) candidate token ids
        public float[] Keys = [];      // (vocab) negated logits of the candidates (ascending = most likely first)
        public float[] Adjusted = [];  // (vocab) the logits after bias, penalties and mask

        [ThreadStatic] private static Scratch? _mine;

        public static Scratch For(int vocab)
        {
            var s = _mine ??= new Scratch();
            if (s.Probs.Length < vocab)
            {
                s.Probs = new float[vocab];
                s.Index = new int[vocab];
                s.Keys = new float[vocab];
                s.Adjusted = new float[vocab];
            }
            return s;
        }
    }

    private readonly SamplingParams _p;
    private readonly Rng _rng;
    private readonly bool _adjusts;    // bias, penalties or a mask apply (the logits are copied and adjusted first)
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
        _constraint = constraint;
        _adjusts = p.LogitBias.Count > 0 || p.PresencePenalty != 0 || p.FrequencyPenalty != 0 || p.RepetitionPenalty != 1 || constraint is not null;
        if (p.RepetitionPenalty != 1 && prompt is not null) _seen.UnionWith(prompt);
    }

    /// <summary>The grammar's value is complete: the sequence should end.</summary>
    public bool Done => _constraint?.IsDone == true;

    /// <summary>The next token, or -1 when the grammar allows none (never with a complete vocabulary).</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        var scratch = Scratch.For(logits.Length);
        if (_adjusts)
        {
            var adjusted = scratch.Adjusted.AsSpan(0, logits.Length);
            logits.CopyTo(adjusted);
            if (Adjust(adjusted) == 0) return -1;
            logits = adjusted;
        }
        return Choose(logits, scratch, null);
    }

    /// <summary>This step's row for sampling on the device (<see cref="DeviceSampling"/>): greedy, or random with this
    /// step's uniform drawn now from the request's generator (the draw <see cref="Sample"/> would make), or
    /// <see cref="DeviceSampleMode.Host"/> when the device cannot sample with these parameters (the logits come back and
    /// <see cref="Sample"/> runs as usual). <paramref name="logprobs"/>: alternatives to report, null for no logprobs.</summary>
    public DeviceSampleRow DeviceRow(int vocabSize, int? logprobs)
    {
        if (_adjusts || !DeviceSampling.Supports(_p, vocabSize)) return DeviceSampleRow.Host;
        int top = logprobs ?? -1;
        if (_p.Temperature == 0) return new DeviceSampleRow(DeviceSampleMode.Greedy, 0, 0, 1, 0, top, 0);
        return new DeviceSampleRow(DeviceSampleMode.Random, _p.Temperature, _p.TopK, _p.TopP, _p.MinP, top, _rng.NextDouble());
    }

    /// <summary>The token <see cref="Sample"/> picks, with this step's uniform drawn already (<see cref="DeviceRow"/>): for
    /// a row the device gave back to the host.</summary>
    public int SampleWithDraw(ReadOnlySpan<float> logits, double draw)
    {
        if (_adjusts) throw new InvalidOperationException("a sampler that adjusts the logits samples on the host only");
        return Choose(logits, Scratch.For(logits.Length), draw);
    }

    /// <summary>Records the token chosen (by <see cref="Sample"/>): counts for the penalties, the grammar's next state.</summary>
    public void Accept(int token)
    {
        if (!_adjusts) return;
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

    /// <param name="draw">This step's uniform when drawn already; null draws it here (every non-greedy step draws one,
    /// first, so the device sampler and this one use a request's stream alike).</param>
    private int Choose(ReadOnlySpan<float> logits, Scratch scratch, double? draw)
    {
        if (_p.Temperature == 0) return Ops.Argmax(logits);
        double u = draw ?? _rng.NextDouble();
        var index = scratch.Index;
        var probs = scratch.Probs;
        int v = logits.Length;
        int n;
        float invT = 1f / _p.Temperature;
        bool nucleus = false;
        // candidates, most likely first when a filter needs the order
        if (_p.TopK > 0 && _p.TopK < v)
            n = Ops.TopK(index, logits, _p.TopK);
        else
        {
            n = 0;
            for (int i = 0; i < v; i++) if (!float.IsNaN(logits[i])) index[n++] = i;
            if (_p.TopP < 1 && n > 0)
            {
                n = Nucleus(logits, index, scratch.Keys, n, invT, _p.TopP);
                nucleus = true;
            }
        }
        if (n == 0) return Ops.Argmax(logits);
        // softmax(logits / T) over the candidates
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = Math.Max(max, logits[index[i]]);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += probs[i] = MathF.Exp((logits[index[i]] - max) * invT);
        for (int i = 0; i < n; i++) probs[i] = (float)(probs[i] / sum);
        // top-p: the sorted prefix whose mass reaches p (always at least one token; done already without top-k)
        if (_p.TopP < 1 && !nucleus)
        {
            double cum = 0;
            int keep = 0;
            while (keep < n && cum < _p.TopP) cum += probs[keep++];
            n = Math.Max(1, keep);
        }
        // min-p: relative to the most likely remaining token
        if (_p.MinP > 0)
        {
            float best = 0;
            for (int i = 0; i < n; i++) best = Math.Max(best, probs[i]);
            float threshold = _p.MinP * best;
            int m = 0;
            for (int i = 0; i < n; i++)
                if (probs[i] >= threshold) { index[m] = index[i]; probs[m] = probs[i]; m++; }
            n = m;
        }
        double total = 0;
        for (int i = 0; i < n; i++) total += probs[i];
        double r = u * total;
        double acc = 0;
        for (int i = 0; i < n; i++)
        {
            acc += probs[i];
            if (r < acc) return index[i];
        }
        for (int i = n - 1; i > 0; i--) if (probs[i] > 0) return index[i]; // rounding left r at the very end: the last token with mass
        return index[0];
    }

    /// <summary>Top-p without sorting the vocabulary: selects (quickselect on the logits, expected linear time) the
    /// fewest most likely candidates whose share of softmax(logits / T) reaches <paramref name="topP"/>, and sorts only
    /// those, most likely first, into the front of <paramref name="index"/>. Returns how many (at least one).</summary>
    private static int Nucleus(ReadOnlySpan<float> logits, int[] index, float[] keys, int n, float invT, float topP)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < n; i++) max = Math.Max(max, keys[i] = logits[index[i]]);
        double total = 0;
        for (int i = 0; i < n; i++) total += MathF.Exp((keys[i] - max) * invT);
        double target = topP * total, kept = 0; // kept: the mass of [0, lo), all of it above everything in [lo, n)
        int lo = 0, hi = n;                     // [lo, hi) undecided; the nucleus ends in it; [0, hi) reaches the target
        while (hi - lo > 1)
        {
            // three ways around a median-of-three pivot: [lo, gt) above it, [gt, eq) equal, [eq, hi) below
            float a = keys[lo], b = keys[(lo + hi) >> 1], c = keys[hi - 1];
            float pivot = Math.Max(Math.Min(a, b), Math.Min(Math.Max(a, b), c));
            int gt = lo, eq = lo, below = hi;
            while (eq < below)
            {
                float k = keys[eq];
                if (k > pivot) { Swap(keys, index, eq++, gt++); }
                else if (k < pivot) Swap(keys, index, eq, --below);
                else eq++;
            }
            double above = 0;
            for (int i = lo; i < gt; i++) above += MathF.Exp((keys[i] - max) * invT);
            if (kept + above >= target) { hi = gt; continue; }
            kept += above;
            double one = MathF.Exp((pivot - max) * invT);
            int take = gt;
            while (take < eq && kept < target) { kept += one; take++; }
            if (kept >= target || eq == hi) { lo = hi = Math.Max(take, lo + 1); break; }
            lo = eq;
        }
        int keep = Math.Max(1, hi);
        for (int i = 0; i < keep; i++) keys[i] = -keys[i];
        Array.Sort(keys, index, 0, keep); // most likely first
        return keep;
    }

    private static void Swap(float[] keys, int[] index, int i, int j)
    {
        (keys[i], keys[j]) = (keys[j], keys[i]);
        (index[i], index[j]) = (index[j], index[i]);
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
