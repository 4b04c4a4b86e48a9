using Loom.Inference.Model;

namespace Loom.Benchmarks;

/// <summary>Model shapes the suites share, so their figures describe the same model.</summary>
internal static class Shapes
{
    /// <summary>SmolLM2-135M's shape (random weights in every suite).</summary>
    public static readonly ModelConfig SmolLM2 = new()
    {
        ModelType = "llama", HiddenSize = 576, IntermediateSize = 1536, NumLayers = 30, NumHeads = 9, NumKvHeads = 3,
        HeadDim = 64, VocabSize = 49152, TieWordEmbeddings = true, RmsNormEps = 1e-5, RopeTheta = 100000, MaxPositionEmbeddings = 8192,
    };
}
