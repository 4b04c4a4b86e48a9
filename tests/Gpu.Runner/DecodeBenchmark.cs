using System.Diagnostics;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using Loom.Inference.Engine;
using Loom.Inference.Kernels;
using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Model;
using Loom.Inference.Model.Gpu;

namespace Loom.Gpu.Runner;

/// <summary>Decode on the Llama-3.2-1B shape (random bf16 weights): the memory-bandwidth floor measured in the same run,
/// batch 1 against it, and batched decode at 8, 64 and 256 sequences as multiples of batch 1.</summary>
internal static class DecodeBenchmark
{
    public static int Run(string backend, bool quick, ModelConfig c)
    {
        string chosen = InferenceBackends.Resolve(backend);
        int[] batches = quick ? [1, 8] : [1, 8, 64, 256];
        const int prompt = 16;
        int steps = quick ? 4 : 16;
        var sw = Stopwatch.StartNew();
        var model = new Transformer(ModelWeights.CreateRandom(c, WeightType.BF16, seed: 1, pack: chosen == InferenceBackends.Cpu ? null : false), maxContext: 1024);
        long kvBytesPerToken = (long)c.NumLayers * 2 * c.KvDim * 4;
        long poolBytes = kvBytesPerToken * batches.Max() * (prompt + steps + 8) * 2;
        double bandwidth;
        if (chosen == InferenceBackends.Cpu)
        {
            bandwidth = HostReadBandwidth();
            Console.WriteLine($"backend: {model.BackendDescription}");
        }
        else
        {
            var device = chosen == InferenceBackends.Cuda ? GpuAccelerator.Cuda() : GpuAccelerator.Cpu();
            bandwidth = DeviceCopyBandwidth(device.Accelerator, quick || chosen != InferenceBackends.Cuda ? 64L << 20 : 2L << 30);
            model.UseBackend(new DeviceForward(device, model, poolBytes));
            Console.WriteLine($"backend: {model.BackendDescription}");
        }
        using var _ = model;
        long bytes = model.Weights.DecodeBytesPerToken;
        double floorMs = bytes / bandwidth * 1e3;
        Console.WriteLine($"model: {(c == Args.Tiny ? "tiny" : "Llama-3.2-1B")} shape, bf16, {c.ParameterCount / 1e6:F0}M parameters, {bytes / 1e6:F1} MB of weights read per decode step (built and uploaded in {sw.Elapsed.TotalSeconds:F1} s)");
        Console.WriteLine($"memory bandwidth (same run): {bandwidth / 1e9:F1} GB/s → bandwidth floor {floorMs:F3} ms/token");
        double batch1 = 0;
        var device1 = model.Backend as DeviceForward;
        foreach (int b in batches)
        {
            var state = model.CreateState(b * prompt, b);
            var caches = Enumerable.Range(0, b).Select(_ => model.CreateCache(prompt + steps + 8)).ToArray();
            var rng = new Random(b);
            state.Clear();
            foreach (var cache in caches) state.Add(cache, Enumerable.Range(0, prompt).Select(_ => rng.Next(c.VocabSize)).ToArray());
            model.Forward(state);
            var next = new int[b];
            for (int i = 0; i < b; i++) next[i] = rng.Next(c.VocabSize);
            var times = new List<double>();
            for (int s = -3; s < steps; s++)
            {
                sw.Restart();
                state.Clear();
                for (int i = 0; i < b; i++) state.Add(caches[i], next.AsSpan(i, 1));
                if (device1 is not null) device1.ForwardGreedy(model, state, next); // only the ids come back
                else
                {
                    model.Forward(state);
                    for (int i = 0; i < b; i++) next[i] = model.Kernels.Argmax(state.Logits(i));
                }
                if (s >= 0) times.Add(sw.Elapsed.TotalMilliseconds);
            }
            foreach (var cache in caches) (cache as IDisposable)?.Dispose();
            times.Sort();
            double ms = times[times.Count / 2], best = times[0], tps = b * 1000 / ms;
            if (b == 1)
            {
                batch1 = tps;
                Console.WriteLine($"decode batch 1:   {ms,8:F3} ms/token median ({best:F3} best of {steps}), {tps,8:F1} tokens/s; {floorMs / ms * 100:F0}% of the bandwidth floor's speed (target ≥ 50%)");
            }
            else Console.WriteLine($"decode batch {b,-3}: {ms,8:F3} ms/step median ({best:F3} best of {steps}), {tps,8:F1} tokens/s = {tps / batch1:F1}x batch 1");
        }
        if (device1 is not null) KernelTimes(device1.Device, model.Weights, batches);
        return 0;
    }

    /// <summary>Where a decode step's time goes: an empty launch, and each matmul shape of the model alone (launched back
    /// to back, then one wait), at each batch size; per launch, with the bytes of weights it reads per second.</summary>
    private static void KernelTimes(GpuAccelerator device, ModelWeights weights, int[] batches)
    {
        var k = new GpuKernels(device);
        var a = device.Accelerator;
        var layer = weights.Layers[0];
        var shapes = new (string Name, WeightMatrix W)[] { ("q/o", layer.Q.Weight), ("k/v", layer.K.Weight), ("gate/up", layer.Gate.Weight), ("down", layer.Down.Weight), ("lm_head", weights.LmHead) };
        int n = batches.Max(), width = shapes.Max(x => Math.Max(x.W.Rows, x.W.Cols));
        using var x = a.Allocate1D<float>((long)n * width);
        using var y = a.Allocate1D<float>((long)n * width);
        x.MemSetToZero();
        double Time(int reps, Action launch)
        {
            launch();
            a.Synchronize();
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < reps; i++) launch();
            a.Synchronize();
            return sw.Elapsed.TotalMilliseconds * 1000 / reps;
        }
        Console.WriteLine($"empty launch (SiluMul of 1 float): {Time(2000, () => k.SiluMul(y.View, x.View, x.View, 1)):F1} µs each, back to back");
        foreach (var (name, w) in shapes)
        {
            using var dw = new DeviceMatrix(a, w);
            var line = new System.Text.StringBuilder($"matmul {name,-8} ({w.Rows} x {w.Cols}):");
            foreach (int b in batches)
            {
                double us = Time(50, () => k.MatMul(y.View, x.View, dw, b));
                line.Append($"  b{b} {us:F1} µs ({k.MatMulKernel(b)}, {dw.Bytes / (us * 1e-6) / 1e9:F0} GB/s)");
            }
            Console.WriteLine(line);
        }
    }

    /// <summary>Device-to-device copies of a buffer (read + write bytes per second), best of several.</summary>
    private static double DeviceCopyBandwidth(Accelerator a, long bytes)
    {
        long n = bytes / 4;
        using var src = a.Allocate1D<float>(n);
        using var dst = a.Allocate1D<float>(n);
        src.MemSetToZero();
        a.Synchronize();
        double best = double.MaxValue;
        for (int i = 0; i < 6; i++)
        {
            var sw = Stopwatch.StartNew();
            src.View.CopyTo(dst.View);
            a.Synchronize();
            if (i > 0) best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return 2.0 * bytes / best;
    }

    /// <summary>Sums a 1 GiB host array on every core, best of several passes (bytes read per second).</summary>
    private static unsafe double HostReadBandwidth()
    {
        const long bytes = 1L << 30;
        long n = bytes / 4;
        float* data = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        try
        {
            new Span<float>(data, (int)n).Fill(1f); // 2^28 floats
            nint d = (nint)data;
            int workers = Environment.ProcessorCount;
            double best = double.MaxValue;
            for (int pass = 0; pass < 5; pass++)
            {
                var sw = Stopwatch.StartNew();
                Parallel.For(0, workers, w =>
                {
                    long a = n * w / workers, e = n * (w + 1) / workers;
                    var span = new ReadOnlySpan<float>((float*)d + a, (int)(e - a));
                    System.Numerics.Tensors.TensorPrimitives.Sum(span);
                });
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            return bytes / best;
        }
        finally { NativeMemory.AlignedFree(data); }
    }
}
