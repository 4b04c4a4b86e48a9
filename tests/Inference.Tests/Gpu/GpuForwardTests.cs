using Loom.Inference.Formats;
using Loom.Inference.Memory;
using Loom.Inference.Model;
using Loom.Inference.Model.Gpu;
using Loom.Inference.Tests.Lora;
using Loom.Inference.Tests.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Gpu;

/// <summary>The device-resident forward pass (<see cref="DeviceForward"/>) on ILGPU's CPU accelerator, with the tiny golden
/// models: the oracle's logits (prefill and cached decode), LoRA unmerged from pool pages against the oracle, and a batch
/// of mixed adapters equal to each sequence alone. The same kernels run on CUDA (tests/Gpu.Runner).</summary>
[Collection(IlgpuCpu.Name)]
public sealed class GpuForwardTests(ITestOutputHelper log) : IDisposable
{
    private const double Tolerance = 1e-4;
    private readonly List<TempAdapter> _temps = [];

    public void Dispose() { foreach (var t in _temps) t.Dispose(); }

    public static TheoryData<string, WeightFormat> Cases() => new()
    {
        { "llama_gqa_tied", WeightFormat.Auto },     // GQA, tied head, f32
        { "llama3_scaled_bf16", WeightFormat.Auto }, // llama3 RoPE scaling, bf16 weights on the device
        { "qwen2_bias", WeightFormat.Auto },         // q/k/v bias
        { "mistral_hd64", WeightFormat.Auto },       // head_dim 64
    };

    /// <summary>Every position's logits of the first prompt, then the cached decode steps, against the float64 oracle;
    /// the decode steps' argmax on the device equals the oracle's tokens.</summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void PrefillAndCachedDecodeMatchTheOracle(string name, WeightFormat format)
    {
        var g = Golden.Load(name);
        using var m = IlgpuCpu.Open(name, format);
        Compare.Close(log, $"{name} ilgpu-cpu prefill 0", GoldenLogitsTests.PrefillAll(m, g.Prompts[0]), g.Prefill[0], Tolerance);

        int vocab = m.Config.VocabSize;
        var s = m.CreateState(64, 1);
        var cache = m.CreateCache();
        Assert.IsType<PagedKvCache>(cache);
        s.Add(cache, g.Prompts[g.DecodePrompt]);
        m.Forward(s);
        var ids = new int[1];
        var greedy = (DeviceForward)m.Backend!;
        for (int step = 0; step < Math.Min(2, g.DecodeTokens.Length); step++)
        {
            Compare.Close(log, $"{name} ilgpu-cpu decode step {step}", s.Logits(0), g.Decode.AsSpan(step * vocab, vocab), Tolerance);
            Assert.Equal(g.DecodeTokens[step], Loom.Inference.Kernels.NaiveOps.Argmax(s.Logits(0)));
            if (step == 1) break;
            s.Clear();
            s.Add(cache, [g.DecodeTokens[step]]);
            if (step == 0)
            {
                // the same step with the argmax on the device: only the id comes back
                greedy.ForwardGreedy(m, s, ids);
                Assert.Equal(g.DecodeTokens[step + 1], ids[0]);
                cache.Truncate(cache.Length - 1);
                s.Clear();
                s.Add(cache, [g.DecodeTokens[step]]);
            }
            m.Forward(s);
        }
    }

    /// <summary>The oracle's with-adapter prefill logits, the adapter unmerged in pool pages read by the device.</summary>
    [Theory]
    [MemberData(nameof(LoraGolden.Names), MemberType = typeof(LoraGolden))]
    public void UnmergedLoraPrefillMatchesTheOracle(string name)
    {
        var g = LoraGolden.Load(name);
        using var model = IlgpuCpu.Open(g.Model);
        var adapter = PeftAdapter.Load(g.Directory, model.Config);
        using var pool = new PagePool(2048L * model.Config.HiddenSize * 4, model.Config.HiddenSize);
        var r = AdapterResidency.TryCreate(pool, name, 1, adapter)!;
        using var gf = SafetensorsFile.Open(Path.Combine(g.Directory, "golden.safetensors"));
        var prompt = Golden.Load(g.Model).Prompts[0];
        var s = model.CreateState(prompt.Length, 1, allPositionLogits: true, maxLoraRank: adapter.Config.Rank);
        using var kv = PagedKvCache.For(pool, model.Config, 1, 64);
        s.Add(kv, prompt, r);
        model.Forward(s, LogitsMode.AllPositions);
        Compare.Close(log, $"{name} ilgpu-cpu unmerged prefill", s.LogitsBuffer.AsSpan(0, prompt.Length * model.Config.VocabSize), gf.ReadFloats("prefill.0"), Tolerance);
    }

    /// <summary>A batch of three sequences (a rank-2 adapter, the base model, a rank-8 adapter) through a prefill and a
    /// decode step equals each sequence run alone on the device, and the CPU backend on the same batch.</summary>
    [Fact]
    public void MixedAdapterBatchEqualsEachAloneAndTheCpuBackend()
    {
        const string baseName = "llama_gqa_tied";
        using var gpu = IlgpuCpu.Open(baseName);
        using var cpu = GoldenLogitsTests.Open(baseName);
        var c = gpu.Config;
        using var pool = new PagePool(4096L * c.HiddenSize * 4, c.HiddenSize);
        AdapterResidency Adapter(int rank, LoraTarget[] targets, int seed)
        {
            var t = TempAdapter.Random(c, rank, targets, seed, alpha: 0.5 * rank);
            _temps.Add(t);
            return AdapterResidency.TryCreate(pool, $"a{seed}", seed, PeftAdapter.Load(t.Path, c))!;
        }
        var a2 = Adapter(2, [LoraTarget.QProj, LoraTarget.VProj, LoraTarget.UpProj], 1);
        var a8 = Adapter(8, [.. LoraTargets.All], 2);
        AdapterResidency?[] adapters = [a2, null, a8];
        int[][] prompts = [[5, 17, 3, 9], [5, 17, 3, 9], [40, 2, 7, 7, 1]];
        int n = prompts.Length, vocab = c.VocabSize, id = 0;

        float[][] Run(Transformer m, int[] which)
        {
            var caches = which.Select(_ => (IKvCache)PagedKvCache.For(pool, c, ++id, 64)).ToArray();
            var s = m.CreateState(32, n, maxLoraRank: 8);
            var logits = new List<float>[which.Length];
            for (int i = 0; i < which.Length; i++) logits[i] = [];
            for (int step = 0; step < 2; step++)
            {
                s.Clear();
                for (int i = 0; i < which.Length; i++)
                    s.Add(caches[i], step == 0 ? prompts[which[i]] : [(which[i] * 11 + step * 3) % vocab], adapters[which[i]]);
                m.Forward(s);
                for (int i = 0; i < which.Length; i++) logits[i].AddRange(s.Logits(i).ToArray());
            }
            foreach (var cache in caches) ((PagedKvCache)cache).Release();
            return logits.Select(l => l.ToArray()).ToArray();
        }

        var batched = Run(gpu, [0, 1, 2]);
        var onCpu = Run(cpu, [0, 1, 2]);
        for (int i = 0; i < n; i++)
        {
            var alone = Run(gpu, [i])[0];
            Compare.Close(log, $"sequence {i} batched vs alone (ilgpu-cpu)", batched[i], alone, Tolerance);
            Compare.Close(log, $"sequence {i} ilgpu-cpu vs cpu", batched[i], onCpu[i], Tolerance);
        }
        // the adapters change the logits: the same prompt with and without a2 differs
        Assert.True(Compare.RelativeError(batched[0], batched[1]).Rel > 1e-3);
    }
}
