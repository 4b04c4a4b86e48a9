using System.Text.Json;
using Loom.Inference.Formats;
using Loom.Inference.Model;
using Loom.Inference.Model.Gpu;

namespace Loom.Gpu.Runner;

/// <summary>The golden-logit checks of tests/Inference.Tests (Model/GoldenLogitsTests, Gpu/GpuForwardTests) on a chosen
/// backend: each model's prefill logits at every position and its cached decode steps against the float64 oracle.</summary>
internal static class GoldenCheck
{
    private const double Tolerance = 1e-4;

    public static int Run(string modelsDir, string backend)
    {
        int failures = 0;
        foreach (string dir in Directory.GetDirectories(modelsDir).Order())
        {
            if (!File.Exists(Path.Combine(dir, "golden.json"))) continue;
            string name = Path.GetFileName(dir);
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json")));
            var r = doc.RootElement;
            var prompts = r.GetProperty("prompts").EnumerateArray().Select(p => p.EnumerateArray().Select(x => x.GetInt32()).ToArray()).ToArray();
            int decodePrompt = r.GetProperty("decode_prompt").GetInt32();
            var decodeTokens = r.GetProperty("decode_tokens").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            using var golden = SafetensorsFile.Open(Path.Combine(dir, "golden.safetensors"));
            var config = ModelConfig.Load(dir);
            using var m = Args.On(new Transformer(ModelWeights.Load(dir, config), maxContext: 64), backend);
            int vocab = config.VocabSize;

            for (int i = 0; i < prompts.Length; i++)
            {
                var s = m.CreateState(prompts[i].Length, 1, allPositionLogits: true);
                s.Add(m.CreateCache(), prompts[i]);
                m.Forward(s, LogitsMode.AllPositions);
                var all = new float[prompts[i].Length * vocab];
                for (int t = 0; t < prompts[i].Length; t++) s.Logits(t).CopyTo(all.AsSpan(t * vocab));
                failures += Check($"{name} prefill {i}", all, golden.ReadFloats($"prefill.{i}"));
            }
            var decode = golden.ReadFloats("decode.0");
            var st = m.CreateState(64, 1);
            var cache = m.CreateCache();
            st.Add(cache, prompts[decodePrompt]);
            m.Forward(st);
            var ids = new int[1];
            for (int step = 0; step < decodeTokens.Length; step++)
            {
                failures += Check($"{name} decode {step}", st.Logits(0), decode.AsSpan(step * vocab, vocab));
                st.Clear();
                st.Add(cache, [decodeTokens[step]]);
                if (m.Backend is DeviceForward device && step + 1 < decodeTokens.Length)
                {
                    device.ForwardGreedy(m, st, ids); // argmax on the device, then the same step again for the logits
                    if (ids[0] != decodeTokens[step + 1]) { Console.WriteLine($"FAIL {name} device argmax {ids[0]} != {decodeTokens[step + 1]}"); failures++; }
                    cache.Truncate(cache.Length - 1);
                    st.Clear();
                    st.Add(cache, [decodeTokens[step]]);
                }
                m.Forward(st);
            }
        }
        Console.WriteLine(failures == 0 ? "golden: all passed" : $"golden: {failures} FAILED");
        return failures == 0 ? 0 : 1;
    }

    private static int Check(string what, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(d)) d = double.PositiveInfinity;
            maxDiff = Math.Max(maxDiff, d);
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        double rel = maxDiff / Math.Max(maxRef, 1e-30);
        bool ok = rel <= Tolerance;
        Console.WriteLine($"{(ok ? "ok  " : "FAIL")} {what}: max rel err {rel:E2} (tolerance {Tolerance:E0})");
        return ok ? 0 : 1;
    }
}
