namespace Loom.Inference.Sampling;

/// <summary>How a row of a batch is sampled when the backend samples on the device (docs/decisions/010-ilgpu-backend.md).</summary>
public enum DeviceSampleMode
{
    /// <summary>Not sampled this step (a prefill chunk that is not the prompt's last): nothing comes back.</summary>
    Skip = 0,
    /// <summary>Sampled on the host: the row's logits come back (grammar, logit bias, penalties, a top-k past
    /// <see cref="DeviceSampling.MaxCandidates"/>).</summary>
    Host = 1,
    /// <summary>Argmax on the device (temperature 0).</summary>
    Greedy = 2,
    /// <summary>Temperature, top-k, top-p and min-p on the device with the sampler's own uniform draw.</summary>
    Random = 3,
}

/// <summary>One row's sampling parameters on the device; <see cref="Draw"/> is the uniform in [0, 1) the request's own
/// generator drew for this step (<see cref="Sampler.DeviceRow"/>), so the device picks the token the host sampler would.
/// <see cref="TopLogprobs"/>: -1 reports no logprobs, else the chosen token's and this many alternatives'.</summary>
public readonly record struct DeviceSampleRow(DeviceSampleMode Mode, float Temperature, int TopK, float TopP, float MinP, int TopLogprobs, double Draw)
{
    public static readonly DeviceSampleRow Skip = new(DeviceSampleMode.Skip, 0, 0, 1, 0, -1, 0);
    public static readonly DeviceSampleRow Host = new(DeviceSampleMode.Host, 0, 0, 1, 0, -1, 0);
    public bool OnDevice => Mode is DeviceSampleMode.Greedy or DeviceSampleMode.Random;
}

/// <summary>What the device sampled for one row: the token, its logprob (when asked), how many top alternatives it
/// wrote, and <see cref="NeedsHost"/> = 1 when the row could not be sampled there (a top-p nucleus larger than
/// <see cref="DeviceSampling.MaxCandidates"/>): its logits come back and the host samples it with the same draw.</summary>
public readonly record struct DeviceSample(int Token, float Logprob, int NeedsHost, int TopCount);

/// <summary>A batch's rows to sample on the device and what came back, allocated once for a batch capacity.</summary>
public sealed class DeviceSampleBatch(int capacity)
{
    public int Capacity { get; } = capacity;
    public readonly DeviceSampleRow[] Rows = new DeviceSampleRow[capacity];                        // (capacity)
    public readonly DeviceSample[] Results = new DeviceSample[capacity];                           // (capacity)
    public readonly int[] TopIds = new int[capacity * DeviceSampling.MaxTopLogprobs];              // (capacity, 20)
    public readonly float[] TopLogprobs = new float[capacity * DeviceSampling.MaxTopLogprobs];     // (capacity, 20)

    /// <summary>Row i's result came from the device (else its logits are in the state and the host samples it).</summary>
    public bool Sampled(int i) => Rows[i].OnDevice && Results[i].NeedsHost == 0;

    /// <summary>Row i's logprobs as <see cref="Sampler.Logprobs"/> reports them (null when the row asked for none).</summary>
    public TokenLogprobs? Logprobs(int i)
    {
        if (Rows[i].TopLogprobs < 0) return null;
        var r = Results[i];
        var top = new TokenAlternative[r.TopCount];
        for (int j = 0; j < top.Length; j++)
            top[j] = new TokenAlternative(TopIds[i * DeviceSampling.MaxTopLogprobs + j], TopLogprobs[i * DeviceSampling.MaxTopLogprobs + j]);
        return new TokenLogprobs(r.Token, r.Logprob, top);
    }
}

/// <summary>What the device sampler takes.</summary>
public static class DeviceSampling
{
    /// <summary>Candidates a row's top-k or top-p set may hold on the device (a power of two): a larger top-k is sampled on
    /// the host; a larger nucleus comes back for the host (<see cref="DeviceSample.NeedsHost"/>).</summary>
    public const int MaxCandidates = 1024;
    /// <summary>Alternatives reported with a logprob at most (<see cref="SamplingParams.Validate"/> allows 20).</summary>
    public const int MaxTopLogprobs = 20;

    /// <summary>Whether the device can sample with <paramref name="p"/> (no logit bias, penalties or grammar, a top-k it
    /// holds).</summary>
    public static bool Supports(SamplingParams p, int vocabSize) =>
        p.Grammar is null && p.LogitBias.Count == 0 && p.PresencePenalty == 0 && p.FrequencyPenalty == 0 && p.RepetitionPenalty == 1
        && (p.TopK <= 0 || p.TopK >= vocabSize || p.TopK <= MaxCandidates) && (p.Logprobs ?? 0) <= MaxTopLogprobs;
}
