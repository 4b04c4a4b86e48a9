using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Model.Gpu;
using Loom.Inference.Sampling;

namespace Loom.Gpu.Runner;

/// <summary>Sampling on the device against the host sampler (tests/Inference.Tests/Gpu/GpuSamplingTests on a chosen
/// backend): each mode over random logits rows, a few steps with each row's own seeded draws, the same token ids and
/// logprobs within 1e-4; then the time of one device sampling step at 64 rows of a 128,256-token vocabulary.</summary>
internal static class SamplingCheck
{
    private static readonly (string Name, SamplingParams P)[] Modes =
    [
        ("greedy+logprobs", new SamplingParams { Temperature = 0, Logprobs = 5 }),
        ("temperature", new SamplingParams { Temperature = 0.7f }),
        ("min-p", new SamplingParams { Temperature = 1, MinP = 0.1f }),
        ("top-k 50", new SamplingParams { Temperature = 1.5f, TopK = 50, Logprobs = 20 }),
        ("top-p 0.9", new SamplingParams { Temperature = 1.3f, TopP = 0.9f, Logprobs = 3 }),
        ("top-k+top-p", new SamplingParams { Temperature = 1, TopK = 40, TopP = 0.8f }),
        ("top-p+min-p", new SamplingParams { Temperature = 1, TopP = 0.95f, MinP = 0.02f }),
    ];

    public static int Run(string backend, bool quick)
    {
        using var device = backend == "cuda" ? GpuAccelerator.Cuda() : GpuAccelerator.Cpu();
        Console.WriteLine($"backend: {device.Kind}: {device.Description}");
        var kernels = new GpuKernels(device);
        int failures = 0;
        foreach (int vocab in quick ? new[] { 1500 } : [1500, 128256])
            foreach (var (name, p) in Modes)
                failures += Check(kernels, $"{name} (vocab {vocab})", p, vocab, rows: 8, steps: 4);
        if (!quick) Time(kernels, rows: 64, vocab: 128256);
        Console.WriteLine(failures == 0 ? "sampling: all passed" : $"sampling: {failures} FAILED");
        return failures == 0 ? 0 : 1;
    }

    private static int Check(GpuKernels kernels, string what, SamplingParams p, int vocab, int rows, int steps)
    {
        var logits = Logits(rows, vocab, what.Length);
        using var sampler = new DeviceSampler(kernels, rows, vocab);
        using var buffer = kernels.Device.Accelerator.Allocate1D(logits);
        var batch = new DeviceSampleBatch(rows);
        var onDevice = Enumerable.Range(0, rows).Select(i => new Sampler(p with { Seed = (ulong)i }, vocab)).ToArray();
        var host = Enumerable.Range(0, rows).Select(i => new Sampler(p with { Seed = (ulong)i }, vocab)).ToArray();
        int mismatches = 0, handedBack = 0;
        double worst = 0;
        for (int step = 0; step < steps; step++)
        {
            for (int i = 0; i < rows; i++) batch.Rows[i] = onDevice[i].DeviceRow(vocab, p.Logprobs);
            sampler.Sample(buffer.View, batch, rows);
            for (int i = 0; i < rows; i++)
            {
                var row = logits.AsSpan(i * vocab, vocab);
                int want = host[i].Sample(row);
                if (!batch.Sampled(i))
                {
                    // a nucleus over DeviceSampling.MaxCandidates comes back: the host samples it with the row's draw, as the engine does
                    handedBack++;
                    if (onDevice[i].SampleWithDraw(row, batch.Rows[i].Draw) != want) mismatches++;
                    continue;
                }
                if (batch.Results[i].Token != want) { mismatches++; continue; }
                if (p.Logprobs is not int top) continue;
                var got = batch.Logprobs(i)!;
                var reference = Sampler.Logprobs(row, want, top);
                if (!got.Top.Select(t => t.TokenId).SequenceEqual(reference.Top.Select(t => t.TokenId))) mismatches++;
                worst = Math.Max(worst, Math.Abs(got.Logprob - reference.Logprob) / Math.Max(1e-30, Math.Abs(reference.Logprob)));
                for (int j = 0; j < Math.Min(got.Top.Count, reference.Top.Count); j++)
                    worst = Math.Max(worst, Math.Abs(got.Top[j].Logprob - reference.Top[j].Logprob) / Math.Max(1e-30, Math.Abs(reference.Top[j].Logprob)));
            }
        }
        bool ok = mismatches == 0 && worst <= 1e-4;
        string back = handedBack > 0 ? $" ({handedBack} rows handed to the host: nucleus over {DeviceSampling.MaxCandidates} candidates)" : "";
        Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}: {mismatches} of {rows * steps} tokens differ from the host sampler's, worst logprob rel err {worst:E2}{back}");
        return ok ? 0 : 1;
    }

    private static void Time(GpuKernels kernels, int rows, int vocab)
    {
        var logits = Logits(rows, vocab, 1);
        using var sampler = new DeviceSampler(kernels, rows, vocab);
        using var buffer = kernels.Device.Accelerator.Allocate1D(logits);
        var batch = new DeviceSampleBatch(rows);
        foreach (var (name, p) in Modes)
        {
            var samplers = Enumerable.Range(0, rows).Select(i => new Sampler(p with { Seed = (ulong)i }, vocab)).ToArray();
            var times = new List<double>();
            for (int run = 0; run < 7; run++)
            {
                for (int i = 0; i < rows; i++) batch.Rows[i] = samplers[i].DeviceRow(vocab, p.Logprobs);
                long t0 = Stopwatch.GetTimestamp();
                sampler.Sample(buffer.View, batch, rows);
                times.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
            }
            times.Sort();
            Console.WriteLine($"time {name}: {rows} rows x {vocab} vocab, median {times[times.Count / 2]:F3} ms per step (7 runs, first included)");
        }
    }

    private static float[] Logits(int rows, int vocab, int seed)
    {
        var r = new Random(seed);
        var x = new float[rows * vocab];
        // a few tokens stand out (1 in 50 by 9; in a large vocabulary 1 in 1,000 by 14, so a top-p nucleus stays within
        // the device's candidates and is sampled there)
        bool large = vocab > 10_000;
        for (int i = 0; i < x.Length; i++) x[i] = (float)((r.NextDouble() * 2 - 1) * 3 + (r.Next(large ? 1000 : 50) == 0 ? (large ? 14 : 9) : 0));
        return x;
    }
}
