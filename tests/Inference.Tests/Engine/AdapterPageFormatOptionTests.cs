using Loom.Inference.Engine;
using Loom.Inference.Formats;
using Loom.Inference.Memory;
using Loom.Inference.Sampling;
using Loom.Inference.Tests.Serving;
using Microsoft.Extensions.Options;
using static Loom.Inference.Tests.Engine.OptionsBinding;
using static Loom.Inference.Tests.Serving.ServingHarness;

namespace Loom.Inference.Tests.Engine;

/// <summary>Inference:AdapterPageFormat: f32 or bf16 in any case, anything else refused at start with the option named,
/// bf16 refused with a GPU backend (its LoRA kernels read f32 pages); an engine with bf16 adapter pages serves adapters
/// saved in bf16 with exactly the tokens and log-probabilities of f32 pages, in about half the pool pages.</summary>
public sealed class AdapterPageFormatOptionTests : IDisposable
{
    private readonly ServingHarness _h = new();

    public void Dispose() => _h.Dispose();

    [Fact]
    public void F32AndBf16BindInAnyCaseAndF32IsTheDefault()
    {
        Assert.Equal(AdapterPageFormat.F32, new InferenceOptions().AdapterPageFormat);
        Assert.Equal(AdapterPageFormat.F32, Bind(("Backend", "cpu")).AdapterPageFormat);
        Assert.Equal(AdapterPageFormat.Bf16, Bind(("AdapterPageFormat", "bf16")).AdapterPageFormat);
        Assert.Equal(AdapterPageFormat.Bf16, Bind(("AdapterPageFormat", "BF16")).AdapterPageFormat);
        Assert.Equal(AdapterPageFormat.F32, Bind(("AdapterPageFormat", "f32")).AdapterPageFormat);
    }

    [Fact]
    public void AnUnknownFormatFailsAtStartWithTheOptionNamed()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Bind(("AdapterPageFormat", "int4")));
        Assert.Contains("Inference:AdapterPageFormat", e.Message);
        Assert.Contains("int4", e.Message);
        Assert.Equal("Inference:AdapterPageFormat must be f32 or bf16", new InferenceOptions { AdapterPageFormat = (AdapterPageFormat)5 }.Problem());
        var numeric = Assert.Throws<OptionsValidationException>(() => Bind(("AdapterPageFormat", "5")));
        Assert.Contains("Inference:AdapterPageFormat must be f32 or bf16", numeric.Message);
    }

    [Theory]
    [InlineData("cuda")]
    [InlineData("ilgpu-cpu")]
    public void Bf16WithAGpuBackendFailsAtStart(string backend)
    {
        string? problem = new InferenceOptions { Backend = backend, AdapterPageFormat = AdapterPageFormat.Bf16 }.Problem();
        Assert.NotNull(problem);
        Assert.StartsWith("Inference:AdapterPageFormat = bf16 is supported by the CPU backend only", problem);
        Assert.Null(new InferenceOptions { Backend = "cpu", AdapterPageFormat = AdapterPageFormat.Bf16 }.Problem());
        var e = Assert.Throws<OptionsValidationException>(() => Bind(("Backend", backend), ("AdapterPageFormat", "bf16")));
        Assert.Contains("Inference:AdapterPageFormat = bf16 is supported by the CPU backend only", e.Message);
        var load = Assert.Throws<ArgumentException>(() => ServingEngine.Load(new InferenceOptions
        {
            ModelDirectory = Golden.PathOf("llama_gqa_tied"), Backend = backend, AdapterPageFormat = AdapterPageFormat.Bf16,
        }));
        Assert.Contains("Inference:AdapterPageFormat = bf16", load.Message);
    }

    /// <summary>Ten requests over three adapters saved with bf16 values (ranks 2, 8, 16) and the base model, greedy and
    /// seeded, with log-probabilities: the engine with bf16 adapter pages gives the f32-page engine's tokens (all at once)
    /// and log-probabilities (each alone) exactly, with fewer adapter pages in its pool; the pool audits clean.</summary>
    [Fact]
    public async Task Bf16PagesServeAdaptersSavedInBf16ExactlyAsF32Pages()
    {
        var f32 = _h.Engine();
        var bf16 = _h.Engine(o => { o.AdapterPageFormat = AdapterPageFormat.Bf16; return o; });
        Assert.Equal("bf16", bf16.Model.AdapterPageFormat);
        Assert.Equal("f32", f32.Model.AdapterPageFormat);
        string[] folders =
        [
            _h.Adapter(2, [LoraTarget.QProj, LoraTarget.VProj], 1, bf16Values: true),
            _h.Adapter(8, [.. LoraTargets.All], 2, bf16Values: true),
            _h.Adapter(16, [LoraTarget.OProj, LoraTarget.DownProj, LoraTarget.GateProj, LoraTarget.KProj], 3, bf16Values: true),
        ];
        for (int i = 0; i < folders.Length; i++)
        {
            f32.RegisterAdapter($"a{i}", folders[i]);
            bf16.RegisterAdapter($"a{i}", folders[i]);
        }
        var rng = new Random(5);
        var requests = Enumerable.Range(0, 10).Select(i => new GenerationRequest
        {
            PromptTokenIds = Enumerable.Range(0, 3 + rng.Next(10)).Select(_ => rng.Next(320)).ToArray(),
            AdapterId = i % 4 == 3 ? null : $"a{i % 3}",
            Sampling = i % 2 == 0
                ? new SamplingParams { Temperature = 0, MaxTokens = 6, IgnoreEos = true, Logprobs = 3 }
                : new SamplingParams { Seed = (ulong)i, TopP = 0.9f, MaxTokens = 6, IgnoreEos = true, Logprobs = 3 },
        }).ToArray();
        // all at once: a batch's composition depends on timing, which moves log-probabilities in their last bits, so
        // the tokens are compared here, and each request alone (the same batches in both engines) to the bit below
        var together32 = await Task.WhenAll(requests.Select(r => Run(f32, r))).WaitAsync(Limit);
        var together16 = await Task.WhenAll(requests.Select(r => Run(bf16, r))).WaitAsync(Limit);
        var want = new List<GenerationEvent>[requests.Length];
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.Equal(Tokens(together32[i]), Tokens(together16[i]));
            want[i] = await Run(f32, requests[i]).WaitAsync(Limit);
            var got = await Run(bf16, requests[i]).WaitAsync(Limit);
            Assert.Equal(Tokens(want[i]), Tokens(got));
            var lw = want[i].Where(e => e.Logprobs is not null).Select(e => e.Logprobs!).ToArray();
            var lg = got.Where(e => e.Logprobs is not null).Select(e => e.Logprobs!).ToArray();
            Assert.Equal(6, lw.Length);
            Assert.Equal(lw.Select(l => l.Logprob), lg.Select(l => l.Logprob));
            Assert.Equal(lw.SelectMany(l => l.Top.Select(a => (a.TokenId, a.Logprob))), lg.SelectMany(l => l.Top.Select(a => (a.TokenId, a.Logprob))));
        }
        // the adapters change the output (the comparison is not of the base model alone)
        var baseOnly = await Run(f32, requests[0] with { AdapterId = null }).WaitAsync(Limit);
        Assert.NotEqual(want[0].Where(e => e.Logprobs is not null).SelectMany(e => e.Logprobs!.Top.Select(a => a.Logprob)),
            baseOnly.Where(e => e.Logprobs is not null).SelectMany(e => e.Logprobs!.Top.Select(a => a.Logprob)));
        var pages32 = f32.Adapters.PagesOf("a1");
        var pages16 = bf16.Adapters.PagesOf("a1");
        Assert.True(pages16 < 0.6 * pages32, $"rank 8 on every module: {pages16} bf16 pages, {pages32} f32 pages");
        await Idle(bf16);
        Assert.Null(bf16.Pool.Audit());
    }
}
