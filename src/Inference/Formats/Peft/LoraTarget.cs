using Loom.Inference.Model;

namespace Loom.Inference.Formats;

/// <summary>The linear layers of a Llama-family decoder layer that a LoRA adapter may target.</summary>
public enum LoraTarget { QProj, KProj, VProj, OProj, GateProj, UpProj, DownProj }

public static class LoraTargets
{
    public const int Count = 7;

    public static readonly IReadOnlyList<LoraTarget> All =
        [LoraTarget.QProj, LoraTarget.KProj, LoraTarget.VProj, LoraTarget.OProj, LoraTarget.GateProj, LoraTarget.UpProj, LoraTarget.DownProj];

    /// <summary>The module name PEFT and Hugging Face use (q_proj, ..., down_proj).</summary>
    public static string Name(LoraTarget t) => t switch
    {
        LoraTarget.QProj => "q_proj",
        LoraTarget.KProj => "k_proj",
        LoraTarget.VProj => "v_proj",
        LoraTarget.OProj => "o_proj",
        LoraTarget.GateProj => "gate_proj",
        LoraTarget.UpProj => "up_proj",
        LoraTarget.DownProj => "down_proj",
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool TryParse(string name, out LoraTarget t)
    {
        foreach (var c in All)
            if (Name(c) == name) { t = c; return true; }
        t = default;
        return false;
    }

    /// <summary>The submodule holding the layer: self_attn or mlp.</summary>
    public static string Group(LoraTarget t) => t <= LoraTarget.OProj ? "self_attn" : "mlp";

    /// <summary>(in_features, out_features) of the base layer.</summary>
    public static (int In, int Out) Dims(ModelConfig c, LoraTarget t) => t switch
    {
        LoraTarget.QProj => (c.HiddenSize, c.QDim),
        LoraTarget.KProj or LoraTarget.VProj => (c.HiddenSize, c.KvDim),
        LoraTarget.OProj => (c.QDim, c.HiddenSize),
        LoraTarget.GateProj or LoraTarget.UpProj => (c.HiddenSize, c.IntermediateSize),
        LoraTarget.DownProj => (c.IntermediateSize, c.HiddenSize),
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>PEFT's saved name, e.g. base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight.</summary>
    public static string TensorName(int layer, LoraTarget t, bool isA) =>
        $"base_model.model.model.layers.{layer}.{Group(t)}.{Name(t)}.lora_{(isA ? 'A' : 'B')}.weight";
}

/// <summary>One LoRA pair for one module of one layer, in PEFT's layout, as float32.</summary>
/// <param name="A">(Rank, In) lora_A.weight.</param>
/// <param name="B">(Out, Rank) lora_B.weight.</param>
public sealed record LoraWeights(int Layer, LoraTarget Target, int Rank, int In, int Out, float[] A, float[] B)
{
    public long Bytes => ((long)A.Length + B.Length) * sizeof(float);
}
