using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Lora;

/// <summary>LoRA in the forward pass, unmerged: adapters are read from pool pages per batch segment.</summary>
public sealed class LoraForwardTests(ITestOutputHelper log) : IDisposable
{
    private readonly List<TempAdapter> _temps = [];

    public void Dispose() { foreach (var t in _temps) t.Dispose(); }

    /// <summary>The oracle's with-adapter prefill logits (golden/lora/*/golden.safetensors) from the serving path:
    /// base weights as loaded, the adapter in pool pages, applied per segment; 1e-4.</summary>
    [Theory]
    [MemberData(nameof(LoraGolden.Names), MemberType = typeof(LoraGolden))]
    public void UnmergedPrefillMatchesTheOracle(string name)
    {
        var g = LoraGolden.Load(name);
        using var model = GoldenLogitsTests.Open(g.Model);
        foreach (var (i, actual, expected) in g.PrefillsWithAdapter(model))
            Compare.Close(log, $"{name} unmerged prefill {i}", actual, expected, 1e-4);
    }

    /// <summary>One batch mixing base-model sequences and three adapters of ranks 2, 8 and 16 (different target
    /// modules, sequences of one adapter not all adjacent): through a chunked prefill and greedy decode steps, each
    /// sequence's logits equal that sequence run alone on a copy of the base weights with its adapter merged, 1e-4.</summary>
    [Fact]
    public void MixedAdapterBatchEqualsEachRequestAloneOnMergedWeights()
    {
        const string baseName = "llama_gqa_tied";
        using var model = GoldenLogitsTests.Open(baseName);
        var c = model.Config;
        (int Rank, LoraTarget[] Targets)[] specs =
        [
            (2, [LoraTarget.QProj, LoraTarget.VProj]),
            (8, [.. LoraTargets.All]),
            (16, [LoraTarget.OProj, LoraTarget.GateProj, LoraTarget.DownProj, LoraTarget.KProj]),
        ];
        var adapters = specs.Select((sp, i) =>
        {
            var t = TempAdapter.Random(c, sp.Rank, sp.Targets, seed: 10 + i, alpha: 0.05 * sp.Rank);
            _temps.Add(t);
            return PeftAdapter.Load(t.Path, c);
        }).ToArray();
        using var pool = new PagePool(4096L * c.HiddenSize * 4, c.HiddenSize);
        var resident = adapters.Select((a, i) => AdapterResidency.TryCreate(pool, $"a{i}", i + 1, a)!).ToArray();

        // (adapter index or -1, prompt)
        (int Adapter, int[] Prompt)[] reqs =
        [
            (-1, [317, 5, 9, 12, 40]), (0, [317, 77, 3]), (1, [317, 8, 150, 22, 23, 24, 25]),
            (0, [317, 200, 201, 202]), (2, [317, 11]), (-1, [317, 64, 65]), (2, [317, 90, 91, 92, 93, 94]),
        ];
        int n = reqs.Length, steps = 3;
        var caches = reqs.Select((_, i) => PagedKvCache.For(pool, c, i, 64)).ToArray();
        var s = model.CreateState(64, n, maxLoraRank: 16);
        var batched = new List<float[]>[n];
        var fed = new List<int>[n];
        for (int i = 0; i < n; i++) { batched[i] = []; fed[i] = [.. reqs[i].Prompt]; }
        // prefill in two chunks per prompt (first half, then the rest), then greedy decode
        void Step(Func<int, int[]> tokensOf)
        {
            s.Clear();
            for (int i = 0; i < n; i++) s.Add(caches[i], tokensOf(i), reqs[i].Adapter < 0 ? null : resident[reqs[i].Adapter]);
            model.Forward(s);
        }
        Step(i => reqs[i].Prompt[..Math.Max(1, reqs[i].Prompt.Length / 2)]);
        Step(i => reqs[i].Prompt[Math.Max(1, reqs[i].Prompt.Length / 2)..] is { Length: > 0 } rest ? rest : [reqs[i].Prompt[^1]]);
        // (a one-token prompt would repeat its token; none of these prompts is that short)
        for (int step = 0; step < steps; step++)
        {
            var next = new int[n];
            for (int i = 0; i < n; i++)
            {
                batched[i].Add(s.Logits(i).ToArray());
                next[i] = Ops.Argmax(s.Logits(i));
                fed[i].Add(next[i]);
            }
            Step(i => [next[i]]);
        }
        for (int i = 0; i < n; i++) batched[i].Add(s.Logits(i).ToArray());

        using var baseAlone = MergedReference.Open(baseName, null);
        var merged = adapters.Select(a => MergedReference.Open(baseName, a)).ToArray();
        try
        {
            for (int i = 0; i < n; i++)
            {
                var m = reqs[i].Adapter < 0 ? baseAlone : merged[reqs[i].Adapter];
                var alone = m.CreateState(64, 1);
                var cache = m.CreateCache();
                int p = reqs[i].Prompt.Length;
                alone.Add(cache, fed[i].ToArray().AsSpan(0, p));
                m.Forward(alone);
                for (int step = 0; step <= steps; step++)
                {
                    Compare.Close(step == 0 ? log : null, $"request {i} (adapter {reqs[i].Adapter}) step {step}", batched[i][step], alone.Logits(0), 1e-4);
                    if (step == steps) break;
                    alone.Clear();
                    alone.Add(cache, [fed[i][p + step]]);
                    m.Forward(alone);
                }
                if (reqs[i].Adapter >= 0)
                {
                    // the adapter matters: the base model's logits are far from these
                    var b = baseAlone.CreateState(64, 1);
                    b.Add(baseAlone.CreateCache(), reqs[i].Prompt);
                    baseAlone.Forward(b);
                    var (rel, _, _) = Compare.RelativeError(b.Logits(0), batched[i][0]);
                    Assert.True(rel > 1e-2, $"adapter {reqs[i].Adapter} changes the logits by only {rel:E2}");
                }
            }
        }
        finally { foreach (var m in merged) m.Dispose(); }
        foreach (var kv in caches) kv.Release();
        Assert.Null(pool.Audit());
    }

    [Fact]
    public void AnAdapterAboveTheStatesRankIsRefused()
    {
        using var model = GoldenLogitsTests.Open("llama_gqa_tied");
        var t = TempAdapter.Random(model.Config, 8, [LoraTarget.QProj], seed: 1);
        _temps.Add(t);
        using var pool = new PagePool(1024L * 64 * 4, 64);
        var r = AdapterResidency.TryCreate(pool, "a", 1, PeftAdapter.Load(t.Path, model.Config))!;
        var s = model.CreateState(8, 1, maxLoraRank: 4);
        Assert.Throws<ArgumentException>(() => s.Add(model.CreateCache(), [1, 2], r));
    }
}
