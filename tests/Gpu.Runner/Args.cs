using Loom.Inference.Engine;
using Loom.Inference.Model;

namespace Loom.Gpu.Runner;

internal static class Args
{
    public static string? Value(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    /// <summary>The model on <paramref name="backend"/>, with what it runs on printed.</summary>
    public static Transformer On(Transformer model, string backend)
    {
        InferenceBackends.Apply(model, backend);
        Console.WriteLine($"backend: {model.BackendDescription}");
        return model;
    }

    /// <summary>A tiny Llama shape (--tiny) to try the runner's paths on a machine without a GPU.</summary>
    public static readonly ModelConfig Tiny = new()
    {
        ModelType = "llama", HiddenSize = 64, IntermediateSize = 128, NumLayers = 2, NumHeads = 4, NumKvHeads = 2,
        HeadDim = 16, VocabSize = 320, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 10000, MaxPositionEmbeddings = 2048,
    };

    public static ModelConfig Shape(string[] args) => args.Contains("--tiny") ? Tiny : Llama1B;

    /// <summary>Llama-3.2-1B's shape (random weights).</summary>
    public static readonly ModelConfig Llama1B = new()
    {
        ModelType = "llama", HiddenSize = 2048, IntermediateSize = 8192, NumLayers = 16, NumHeads = 32, NumKvHeads = 8,
        HeadDim = 64, VocabSize = 128256, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 500000,
        RopeScaling = new Llama3RopeScaling(32, 1, 4, 8192), MaxPositionEmbeddings = 131072,
    };
}
