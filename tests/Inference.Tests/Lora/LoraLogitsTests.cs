using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;
using Loom.Inference.Tests.Model;
using Xunit.Abstractions;

namespace Loom.Inference.Tests.Lora;

/// <summary>Checks the oracle's with-adapter logits (tests/golden/lora/*/golden.safetensors, prefill.i) against the
/// C# engine before the serving path is wired: the test folds the adapter into a copy of the base weights
/// (W + scale · B A, test-only; serving never merges) and runs the unchanged transformer. This pins down that
/// PEFT names, layouts and scale are read as the oracle means them, and that the logits file is ready for the
/// integration step's unmerged, paged check.</summary>
public sealed class LoraLogitsTests(ITestOutputHelper log)
{
    [Theory]
    [MemberData(nameof(LoraGolden.Names), MemberType = typeof(LoraGolden))]
    public void MergedCopyMatchesTheOracleLogits(string name)
    {
        var g = LoraGolden.Load(name);
        var config = g.BaseConfig;
        var adapter = PeftAdapter.Load(g.Directory, config);
        string dir = Directory.CreateTempSubdirectory("loom-merged-").FullName;
        try
        {
            string src = Golden.PathOf(g.Model);
            File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
            var tensors = new List<TensorData>();
            using (var f = SafetensorsFile.Open(Path.Combine(src, "model.safetensors")))
            {
                foreach (var t in f.Tensors)
                {
                    var w = f.ReadFloats(t.Name);
                    foreach (var m in adapter.Modules)
                        if (t.Name == $"model.layers.{m.Layer}.{LoraTargets.Group(m.Target)}.{LoraTargets.Name(m.Target)}.weight")
                            Fold(w, m, adapter.Config.Scale);
                    tensors.Add(TensorData.F32(t.Name, t.Shape, w));
                }
            }
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
            using var model = new Transformer(ModelWeights.Load(dir, ModelConfig.Load(dir), WeightFormat.F32), new CpuKernels(), maxContext: 64);
            using var gf = SafetensorsFile.Open(Path.Combine(g.Directory, "golden.safetensors"));
            using var baseGolden = SafetensorsFile.Open(Path.Combine(src, "golden.safetensors"));
            var prompts = Golden.Load(g.Model).Prompts;
            for (int i = 0; i < prompts.Length; i++)
            {
                var expected = gf.ReadFloats($"prefill.{i}");
                Compare.Close(log, $"{name} prefill {i}", GoldenLogitsTests.PrefillAll(model, prompts[i]), expected, 1e-4);
                // the adapter must matter: the base model's logits are far from these
                var (rel, _, _) = Compare.RelativeError(baseGolden.ReadFloats($"prefill.{i}"), expected);
                Assert.True(rel > 1e-2, $"adapter changes the logits by only {rel:E2}");
            }
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>w (Out, In) += scale · B (Out, r) · A (r, In), in double.</summary>
    private static void Fold(float[] w, LoraWeights m, float scale)
    {
        for (int o = 0; o < m.Out; o++)
            for (int i = 0; i < m.In; i++)
            {
                double acc = 0;
                for (int k = 0; k < m.Rank; k++) acc += (double)m.B[o * m.Rank + k] * m.A[k * m.In + i];
                w[o * m.In + i] = (float)(w[o * m.In + i] + scale * acc);
            }
    }
}
