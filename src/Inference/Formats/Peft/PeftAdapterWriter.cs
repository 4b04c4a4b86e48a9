namespace Loom.Inference.Formats;

/// <summary>Writes a LoRA adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors, float32,
/// PEFT's tensor names), readable by Hugging Face PEFT and by <see cref="PeftAdapter.Load"/>.</summary>
public static class PeftAdapterWriter
{
    public static void Write(string folder, PeftAdapterConfig config, IEnumerable<LoraWeights> modules)
    {
        var tensors = new List<TensorData>();
        foreach (var m in modules.OrderBy(m => m.Layer).ThenBy(m => m.Target))
        {
            if (m.Rank != config.Rank)
                throw new ArgumentException($"module {LoraTargets.Name(m.Target)} of layer {m.Layer} has rank {m.Rank}, the config says {config.Rank}");
            if (!config.Targets.Contains(m.Target))
                throw new ArgumentException($"module {LoraTargets.Name(m.Target)} is not in the config's target modules");
            if (m.A.Length != (long)m.Rank * m.In || m.B.Length != (long)m.Out * m.Rank)
                throw new ArgumentException($"module {LoraTargets.Name(m.Target)} of layer {m.Layer}: A or B has the wrong length");
            tensors.Add(TensorData.F32(LoraTargets.TensorName(m.Layer, m.Target, true), [m.Rank, m.In], m.A));
            tensors.Add(TensorData.F32(LoraTargets.TensorName(m.Layer, m.Target, false), [m.Out, m.Rank], m.B));
        }
        Directory.CreateDirectory(folder);
        // write beside, then move into place, so a reader never sees half a folder's file
        string weights = Path.Combine(folder, PeftAdapter.WeightsFileName), cfg = Path.Combine(folder, PeftAdapterConfig.FileName);
        SafetensorsWriter.Write(weights + ".tmp", tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(cfg + ".tmp", config.ToJson());
        File.Move(weights + ".tmp", weights, overwrite: true);
        File.Move(cfg + ".tmp", cfg, overwrite: true);
    }

    public static void Write(string folder, PeftAdapter adapter) => Write(folder, adapter.Config, adapter.Modules);
}
