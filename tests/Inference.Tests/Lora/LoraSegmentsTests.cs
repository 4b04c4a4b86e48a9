using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Lora;

public sealed class LoraSegmentsTests
{
    [Fact]
    public void ConsecutiveSequencesWithOneAdapterShareASegment()
    {
        var config = ModelConfig.Load(Golden.PathOf("llama_gqa_tied"));
        using var t2 = TempAdapter.Random(config, 2, [LoraTarget.QProj], seed: 1);
        using var t8 = TempAdapter.Random(config, 8, [LoraTarget.QProj], seed: 2);
        using var pool = new PagePool(1000L * 64 * 4, 64);
        var a = AdapterResidency.TryCreate(pool, "a", 1, PeftAdapter.Load(t2.Path, config))!;
        var b = AdapterResidency.TryCreate(pool, "b", 2, PeftAdapter.Load(t8.Path, config))!;
        int[] starts = [0, 5, 6, 6, 9, 10];
        int[] counts = [5, 1, 0, 3, 1, 4];
        AdapterResidency?[] adapters = [a, a, b, b, null, null];
        var segs = new LoraSegment[6];
        int n = LoraSegments.Build(segs, starts, counts, adapters);
        Assert.Equal([new LoraSegment(0, 6, a), new LoraSegment(6, 3, b), new LoraSegment(9, 5, null)], segs[..n]);
        Assert.Equal(8, LoraSegments.MaxRank(segs.AsSpan(0, n)));
        Assert.Equal(0, LoraSegments.MaxRank([new LoraSegment(0, 3, null)]));
        Assert.Throws<ArgumentException>(() => LoraSegments.Build(new LoraSegment[2], starts, counts, adapters));
    }
}
