using Loom.Inference.Engine;
using Loom.Inference.Model;
using Microsoft.Extensions.Options;
using static Loom.Inference.Tests.Engine.OptionsBinding;

namespace Loom.Inference.Tests.Engine;

/// <summary>Inference:KvCacheFormat: f32 or bf16 in any case, anything else refused at start with the option named, and
/// bf16 refused with a GPU backend (its kernels read f32 pages).</summary>
public sealed class KvCacheFormatOptionTests
{
    [Fact]
    public void F32AndBf16BindInAnyCaseAndF32IsTheDefault()
    {
        Assert.Equal(KvCacheFormat.F32, new InferenceOptions().KvCacheFormat);
        Assert.Equal(KvCacheFormat.F32, Bind(("Backend", "cpu")).KvCacheFormat);
        Assert.Equal(KvCacheFormat.Bf16, Bind(("KvCacheFormat", "bf16")).KvCacheFormat);
        Assert.Equal(KvCacheFormat.Bf16, Bind(("KvCacheFormat", "BF16")).KvCacheFormat);
        Assert.Equal(KvCacheFormat.F32, Bind(("KvCacheFormat", "f32")).KvCacheFormat);
    }

    [Fact]
    public void AnUnknownFormatFailsAtStartWithTheOptionNamed()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Bind(("KvCacheFormat", "fp8")));
        Assert.Contains("Inference:KvCacheFormat", e.Message);
        Assert.Contains("fp8", e.Message);
        // a number binds to an enum value that is not defined: Problem() names the option and its values
        Assert.Equal("Inference:KvCacheFormat must be f32 or bf16", new InferenceOptions { KvCacheFormat = (KvCacheFormat)7 }.Problem());
        var numeric = Assert.Throws<OptionsValidationException>(() => Bind(("KvCacheFormat", "7")));
        Assert.Contains("Inference:KvCacheFormat must be f32 or bf16", numeric.Message);
    }

    [Theory]
    [InlineData("cuda")]
    [InlineData("ilgpu-cpu")]
    [InlineData(" CUDA ")]
    public void Bf16WithAGpuBackendFailsAtStart(string backend)
    {
        string? problem = new InferenceOptions { Backend = backend, KvCacheFormat = KvCacheFormat.Bf16 }.Problem();
        Assert.NotNull(problem);
        Assert.StartsWith("Inference:KvCacheFormat = bf16 is supported by the CPU backend only", problem);
        Assert.Null(new InferenceOptions { Backend = backend }.Problem());
        Assert.Null(new InferenceOptions { Backend = "cpu", KvCacheFormat = KvCacheFormat.Bf16 }.Problem());
        var e = Assert.Throws<OptionsValidationException>(() => Bind(("Backend", backend), ("KvCacheFormat", "bf16")));
        Assert.Contains("Inference:KvCacheFormat = bf16 is supported by the CPU backend only", e.Message);
        // ServingEngine.Load refuses before it loads anything
        var load = Assert.Throws<ArgumentException>(() => ServingEngine.Load(new InferenceOptions
        {
            ModelDirectory = Golden.PathOf("llama_gqa_tied"), Backend = backend, KvCacheFormat = KvCacheFormat.Bf16,
        }));
        Assert.Contains("Inference:KvCacheFormat = bf16", load.Message);
    }
}
