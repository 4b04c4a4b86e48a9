using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Model.Gpu;
using Loom.Inference.Sampling;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Gpu;

/// <summary>Sampling on the device (<see cref="DeviceSampler"/>, ILGPU's CPU accelerator) against the host
/// <see cref="Sampler"/> on the same logits and seed: every mode gives the same token ids step after step (the device
/// uses the request's own draws), logprobs and alternatives within 1e-4; rows the device cannot take go to the host.</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuSamplingTests(ITestOutputHelper log)
{
    private const double Tolerance = 1e-4;

    private static readonly Dictionary<string, SamplingParams> ModeParams = new()
    {
        ["greedy"] = new SamplingParams { Temperature = 0 },
        ["greedy+logprobs"] = new SamplingParams { Temperature = 0, Logprobs = 5 },
        ["temperature"] = new SamplingParams { Temperature = 0.7f },
        ["temperature+logprobs"] = new SamplingParams { Temperature = 1.3f, Logprobs = 20 },
        ["min-p"] = new SamplingParams { Temperature = 1, MinP = 0.1f },
        ["top-k 1"] = new SamplingParams { Temperature = 1, TopK = 1 },
        ["top-k 5"] = new SamplingParams { Temperature = 0.8f, TopK = 5, Logprobs = 0 },
        ["top-k 50"] = new SamplingParams { Temperature = 1.5f, TopK = 50 },
        ["top-k max"] = new SamplingParams { Temperature = 1, TopK = DeviceSampling.MaxCandidates },
        ["top-p 0.5"] = new SamplingParams { Temperature = 1, TopP = 0.5f },
        ["top-p 0.9"] = new SamplingParams { Temperature = 1.3f, TopP = 0.9f, Logprobs = 3 },
        ["top-k+top-p"] = new SamplingParams { Temperature = 1, TopK = 40, TopP = 0.8f },
        ["top-k+min-p"] = new SamplingParams { Temperature = 2, TopK = 20, MinP = 0.05f },
        ["top-p+min-p"] = new SamplingParams { Temperature = 1, TopP = 0.95f, MinP = 0.02f, Logprobs = 2 },
    };

    public static TheoryData<string> Modes() => [.. ModeParams.Keys];

    [Theory]
    [MemberData(nameof(Modes))]
    public void EachModeGivesTheHostSamplersTokensAndLogprobs(string mode)
    {
        var p = ModeParams[mode];
        const int vocab = 1500, rows = 6, steps = 5;
        var logits = RandomLogits(rows, vocab, seed: mode.Length * 7919, scale: 3f);
        var (tokens, expected, lp, lpExpected) = Run(p, logits, rows, vocab, steps);
        Assert.Equal(expected, tokens);
        if (p.Logprobs is not null) Compare.Close(log, $"{mode}: logprobs and alternatives", lp, lpExpected, Tolerance);
        // the draws matter: a random mode picks more than one distinct token over the rows and steps
        if (p.Temperature > 0 && p.TopK != 1) Assert.True(expected.Distinct().Count() > rows, $"{mode}: the host sampler picked too few distinct tokens to tell");
    }

    /// <summary>Many equal logits: greedy, top-k and the alternatives take the lower token id first, as the host does; NaN
    /// logits are never picked. (Top-p is left out: the host's nucleus orders equal logits arbitrarily.)</summary>
    [Theory]
    [InlineData(0f, 0, 0f, 4, 0)]
    [InlineData(0f, 0, 0f, null, 10)]
    [InlineData(1f, 7, 0f, 3, 0)]
    [InlineData(1f, 7, 0f, null, 10)]
    [InlineData(1f, 0, 0.2f, null, 10)]
    [InlineData(0.9f, 0, 0f, null, 10)]
    public void TiesAndNaNsAreTakenAsTheHostTakesThem(float temperature, int topK, float minP, int? logprobs, int nans)
    {
        const int vocab = 300, rows = 4, steps = 6;
        var p = new SamplingParams { Temperature = temperature, TopK = topK, MinP = minP, Logprobs = logprobs };
        var (tokens, expected, lp, lpExpected) = Run(p, RandomLogits(rows, vocab, seed: 5, scale: 2f, quantum: 0.5f, nans: nans), rows, vocab, steps);
        Assert.Equal(expected, tokens);
        if (p.Logprobs is not null) Compare.Close(log, "ties: logprobs", lp, lpExpected, Tolerance);
    }

    /// <summary>A nucleus larger than the device's candidate list comes back (NeedsHost): the host samples it with the
    /// draw already made and gets what its own sampler gets.</summary>
    [Fact]
    public void ANucleusTooLargeForTheDeviceIsSampledOnTheHostWithTheSameDraw()
    {
        const int vocab = 3000, rows = 2;
        var p = new SamplingParams { Temperature = 1, TopP = 0.99f, Seed = 11 };
        var logits = RandomLogits(rows, vocab, seed: 3, scale: 0.01f); // nearly flat: the nucleus holds ~2,970 tokens
        using var device = new DeviceSampler(IlgpuCpu.Kernels.Value, rows, vocab);
        using var buffer = Upload(logits);
        var batch = new DeviceSampleBatch(rows);
        var onDevice = Enumerable.Range(0, rows).Select(i => new Sampler(p with { Seed = (ulong)i }, vocab)).ToArray();
        var host = Enumerable.Range(0, rows).Select(i => new Sampler(p with { Seed = (ulong)i }, vocab)).ToArray();
        for (int step = 0; step < 3; step++)
        {
            for (int i = 0; i < rows; i++) batch.Rows[i] = onDevice[i].DeviceRow(vocab, null);
            device.Sample(buffer.View, batch, rows);
            for (int i = 0; i < rows; i++)
            {
                Assert.Equal(1, batch.Results[i].NeedsHost);
                Assert.False(batch.Sampled(i));
                var row = logits.AsSpan(i * vocab, vocab);
                Assert.Equal(host[i].Sample(row), onDevice[i].SampleWithDraw(row, batch.Rows[i].Draw));
            }
        }
    }

    /// <summary>Parameters the device does not take make a host row (their logits come back), and a random row draws
    /// one uniform per step from the request's generator, as the host sampler does.</summary>
    [Fact]
    public void RowsTheDeviceCannotSampleAreHostRows()
    {
        const int vocab = 3000;
        Assert.Equal(DeviceSampleMode.Host, new Sampler(new SamplingParams { TopK = DeviceSampling.MaxCandidates + 1 }, vocab).DeviceRow(vocab, null).Mode);
        Assert.Equal(DeviceSampleMode.Random, new Sampler(new SamplingParams { TopK = vocab }, vocab).DeviceRow(vocab, null).Mode); // top-k off
        Assert.Equal(DeviceSampleMode.Host, new Sampler(new SamplingParams { LogitBias = new Dictionary<int, float> { [3] = 5 } }, vocab).DeviceRow(vocab, 2).Mode);
        Assert.Equal(DeviceSampleMode.Host, new Sampler(new SamplingParams { PresencePenalty = 0.5f }, vocab).DeviceRow(vocab, null).Mode);
        Assert.Equal(DeviceSampleMode.Host, new Sampler(new SamplingParams { FrequencyPenalty = 0.5f }, vocab).DeviceRow(vocab, null).Mode);
        Assert.Equal(DeviceSampleMode.Host, new Sampler(new SamplingParams { RepetitionPenalty = 1.2f }, vocab, prompt: [1, 2]).DeviceRow(vocab, null).Mode);
        var greedy = new Sampler(new SamplingParams { Temperature = 0, Seed = 1 }, vocab).DeviceRow(vocab, 3);
        Assert.Equal((DeviceSampleMode.Greedy, 3), (greedy.Mode, greedy.TopLogprobs));
        var a = new Sampler(new SamplingParams { Seed = 9 }, vocab);
        var draws = new[] { a.DeviceRow(vocab, null).Draw, a.DeviceRow(vocab, null).Draw };
        var rng = new Rng(9);
        Assert.Equal(new[] { rng.NextDouble(), rng.NextDouble() }, draws);
    }

    /// <summary>Samples <paramref name="steps"/> steps of every row on the device and with host samplers of the same seeds;
    /// returns the tokens of both, and the logprobs (chosen, then alternatives) of both when asked.</summary>
    private static (int[] Tokens, int[] Expected, float[] Logprobs, float[] ExpectedLogprobs) Run(SamplingParams p, float[] logits, int rows, int vocab, int steps)
    {
        using var device = new DeviceSampler(IlgpuCpu.Kernels.Value, rows, vocab);
        using var buffer = Upload(logits);
        var batch = new DeviceSampleBatch(rows);
        var onDevice = Enumerable.Range(0, rows).Select(i => new Sampler(p with { Seed = (ulong)(100 + i) }, vocab)).ToArray();
        var host = Enumerable.Range(0, rows).Select(i => new Sampler(p with { Seed = (ulong)(100 + i) }, vocab)).ToArray();
        List<int> tokens = [], expected = [];
        List<float> lp = [], lpExpected = [];
        for (int step = 0; step < steps; step++)
        {
            for (int i = 0; i < rows; i++) batch.Rows[i] = onDevice[i].DeviceRow(vocab, p.Logprobs);
            device.Sample(buffer.View, batch, rows);
            for (int i = 0; i < rows; i++)
            {
                Assert.True(batch.Sampled(i), $"row {i} came back to the host");
                var row = logits.AsSpan(i * vocab, vocab);
                int want = host[i].Sample(row);
                tokens.Add(batch.Results[i].Token);
                expected.Add(want);
                if (p.Logprobs is not int top) continue;
                var got = batch.Logprobs(i)!;
                var reference = Sampler.Logprobs(row, want, top);
                Assert.Equal(reference.Top.Select(t => t.TokenId), got.Top.Select(t => t.TokenId));
                lp.Add(got.Logprob);
                lpExpected.Add(reference.Logprob);
                lp.AddRange(got.Top.Select(t => t.Logprob));
                lpExpected.AddRange(reference.Top.Select(t => t.Logprob));
            }
        }
        return ([.. tokens], [.. expected], [.. lp], [.. lpExpected]);
    }

    private static MemoryBuffer1D<float, Stride1D.Dense> Upload(float[] logits)
    {
        var b = IlgpuCpu.Kernels.Value.Device.Accelerator.Allocate1D<float>(logits.Length);
        b.View.CopyFromCPU(logits);
        return b;
    }

    /// <param name="quantum">Rounds the logits to multiples of this (0: not), so that many are equal.</param>
    /// <param name="nans">NaN logits per row.</param>
    private static float[] RandomLogits(int rows, int vocab, int seed, float scale, float quantum = 0, int nans = 0)
    {
        var r = new Random(seed);
        var x = new float[rows * vocab];
        for (int i = 0; i < x.Length; i++)
        {
            // a few tokens stand out, as in a language model's logits
            double v = (r.NextDouble() * 2 - 1) * scale + (r.Next(50) == 0 ? 3 * scale : 0);
            x[i] = quantum > 0 ? MathF.Round((float)v / quantum) * quantum : (float)v;
        }
        for (int row = 0; row < rows; row++)
            for (int j = 0; j < nans; j++) x[row * vocab + r.Next(vocab)] = float.NaN;
        return x;
    }
}
