using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Lora;

/// <summary>A batch of many segments large enough that the kernel runs segments (and pieces of long ones) side by
/// side: equal to the scalar twin, and each segment bit-identical to that segment applied on its own.</summary>
public sealed class LoraParallelSegmentsTests(ITestOutputHelper log)
{
    [Fact]
    public void SegmentsRunSideBySideGiveEachSegmentsOwnResult()
    {
        var config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        using var a8 = TempAdapter.Random(config, 8, [LoraTarget.DownProj], seed: 21);
        using var a16 = TempAdapter.Random(config, 16, [LoraTarget.DownProj, LoraTarget.QProj], seed: 22);
        using var aq = TempAdapter.Random(config, 4, [LoraTarget.QProj], seed: 23);
        using var pool = new PagePool(8192L * 64 * 4, 64);
        var res = new[] { a8, a16, aq }.Select((t, i) => AdapterResidency.TryCreate(pool, $"a{i}", i + 1, PeftAdapter.Load(t.Path, config))!).ToArray();
        var (inDim, outDim) = LoraTargets.Dims(config, LoraTarget.DownProj);
        var segs = new List<LoraSegment>();
        int n = 0;
        var rng = new Random(3);
        for (int i = 0; i < 24; i++)
        {
            int count = i == 5 ? 150 : 1 + rng.Next(12);   // one long run (a prefill) among short ones
            segs.Add(new LoraSegment(n, count, (i % 4) switch { 0 => res[0], 1 => res[1], 2 => null, _ => res[2] }));
            n += count;
        }
        var x = TempAdapter.RandomArray(rng, n * inDim);
        var y0 = TempAdapter.RandomArray(rng, n * outDim);
        var fast = y0.ToArray();
        var naive = y0.ToArray();
        LoraKernel.Apply(fast, x, inDim, outDim, segs.ToArray(), 1, LoraTarget.DownProj, new float[n * 16], Simd.Best);
        NaiveLora.Apply(naive, x, inDim, outDim, segs.ToArray(), 1, LoraTarget.DownProj);
        Compare.Close(log, "parallel segments vs scalar twin", fast, naive, 1e-5);
        foreach (var s in segs)
        {
            var alone = y0.AsSpan(s.Start * outDim, s.Count * outDim).ToArray();
            LoraKernel.Apply(alone, x.AsSpan(s.Start * inDim, s.Count * inDim), inDim, outDim, [s with { Start = 0 }], 1, LoraTarget.DownProj,
                new float[s.Count * 16], Simd.Best);
            Assert.Equal(alone, fast.AsSpan(s.Start * outDim, s.Count * outDim).ToArray());
        }
    }
}
