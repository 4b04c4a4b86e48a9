using System.Diagnostics;
using Loom.Inference.Formats;
using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>Loads GGUF files (e.g. the anchor script's /tmp/smollm135-{f32,bf16,q8}.gguf) and times decode at batch 1,
/// to check that llama.cpp's files load and run at the speed of the same shape from safetensors.</summary>
internal static class GgufBenchmark
{
    public static void Run(string[] paths)
    {
        Console.WriteLine($"machine: {Machine.Describe()}");
        foreach (var path in paths)
        {
            var sw = Stopwatch.StartNew();
            ModelConfig c;
            using (var f = GgufFile.Open(path)) c = GgufConfigReader.Read(f);
            using var model = new Transformer(ModelWeights.LoadGguf(path, c), maxContext: 256);
            double load = sw.Elapsed.TotalSeconds;
            var types = string.Join(", ", new[] { model.Weights.Layers[0].Q.Weight, model.Weights.LmHead }.Select(w => w.Type));
            var state = model.CreateState(16, 1);
            var cache = model.CreateCache(128);
            state.Add(cache, Enumerable.Range(0, 16).Select(i => (i * 7919) % c.VocabSize).ToArray());
            model.Forward(state);
            var times = new List<double>();
            int next = model.Kernels.Argmax(state.Logits(0));
            for (int s = -3; s < 40; s++)
            {
                sw.Restart();
                state.Clear();
                state.Add(cache, [next]);
                model.Forward(state);
                next = model.Kernels.Argmax(state.Logits(0));
                if (s >= 0) times.Add(sw.Elapsed.TotalMilliseconds);
            }
            times.Sort();
            Console.WriteLine($"{Path.GetFileName(path)}: {c.ParameterCount / 1e6:F1}M parameters, loaded in {load:F1} s as {types} (q_proj, lm_head), " +
                $"{model.Weights.DecodeBytesPerToken / 1e6:F1} MB per decode step; decode batch 1 {1000 / times[times.Count / 2]:F1} tokens/s median of {times.Count} ({1000 / times[0]:F1} best)");
        }
    }
}
