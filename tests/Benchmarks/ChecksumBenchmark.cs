using Loom.Inference.Kernels;
using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>A hash of the exact bits of the logits (and of the KV caches' effect on later steps) for prefill, decode at
/// batch 1, 8 and 32, and a batch mixing a prefill chunk with decodes, on random models: one packed shape (SmolLM2's
/// widths, 4 layers) and one whose widths defeat the packed and tiled paths. Two builds whose kernels must agree bit
/// for bit print the same lines.</summary>
internal static class ChecksumBenchmark
{
    private static readonly ModelConfig Packed = new()
    {
        ModelType = "llama", HiddenSize = 576, IntermediateSize = 1536, NumLayers = 4, NumHeads = 9, NumKvHeads = 3,
        HeadDim = 64, VocabSize = 4096, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 100000, MaxPositionEmbeddings = 8192,
    };

    private static readonly ModelConfig Odd = new()
    {
        ModelType = "qwen2", HiddenSize = 200, IntermediateSize = 332, NumLayers = 3, NumHeads = 5, NumKvHeads = 1,
        HeadDim = 40, VocabSize = 1003, TieWordEmbeddings = false, RmsNormEps = 1e-6, RopeTheta = 10000, MaxPositionEmbeddings = 4096,
        QkvBias = true,
    };

    public static void Run()
    {
        foreach (var (name, c) in new[] { ("packed", Packed), ("odd", Odd) })
            foreach (var type in new[] { WeightType.F32, WeightType.BF16 })
            {
                using var model = new Transformer(ModelWeights.CreateRandom(c, type, seed: 7), maxContext: 256);
                Console.WriteLine($"{name} {type}: {Hash(model, c):x16}");
            }
    }

    private static ulong Hash(Transformer model, ModelConfig c)
    {
        ulong h = 14695981039346656037;
        void Add(ReadOnlySpan<float> v)
        {
            foreach (float f in v) h = (h ^ (uint)BitConverter.SingleToInt32Bits(f)) * 1099511628211;
        }
        var rng = new Random(11);
        int Token() => rng.Next(c.VocabSize);
        var state = model.CreateState(96, 32);
        var caches = Enumerable.Range(0, 33).Select(_ => model.CreateCache(200)).ToArray();
        // prefill of 40 tokens for each of the first 32 caches (the transposed-key attention), logits of the last token
        for (int i = 0; i < 32; i++)
        {
            state.Clear();
            state.Add(caches[i], Enumerable.Range(0, 40).Select(_ => Token()).ToArray());
            model.Forward(state);
            Add(state.Logits(0));
        }
        // decode at batch 1, 8 and 32, three steps each
        foreach (int b in new[] { 1, 8, 32 })
            for (int step = 0; step < 3; step++)
            {
                state.Clear();
                for (int i = 0; i < b; i++) state.Add(caches[i], [Token()]);
                model.Forward(state);
                for (int i = 0; i < b; i++) Add(state.Logits(i));
            }
        // a prefill chunk beside decodes
        state.Clear();
        state.Add(caches[32], Enumerable.Range(0, 24).Select(_ => Token()).ToArray());
        for (int i = 0; i < 16; i++) state.Add(caches[i], [Token()]);
        model.Forward(state);
        for (int i = 0; i < 17; i++) Add(state.Logits(i));
        // every position's logits (scoring, training)
        var all = model.CreateState(24, 1, allPositionLogits: true);
        all.Add(model.CreateCache(64), Enumerable.Range(0, 24).Select(_ => Token()).ToArray());
        model.Forward(all, LogitsMode.AllPositions);
        for (int t = 0; t < 24; t++) Add(all.Logits(t));
        return h;
    }
}
