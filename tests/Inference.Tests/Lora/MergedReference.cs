using Loom.Inference.Formats;
using Loom.Inference.Kernels;
using Loom.Inference.Model;

namespace Loom.Inference.Tests.Lora;

/// <summary>The test-only reference path: a golden base model with one adapter folded into a copy of its weights
/// (W + scale · B A, in double), written to a temporary folder and loaded as float32. Serving never does this.</summary>
internal static class MergedReference
{
    public static Transformer Open(string baseModel, PeftAdapter? adapter, int maxContext = 64)
    {
        string src = Golden.PathOf(baseModel);
        string dir = Directory.CreateTempSubdirectory("loom-merged-").FullName;
        try
        {
            File.Copy(Path.Combine(src, "config.json"), Path.Combine(dir, "config.json"));
            var tensors = new List<TensorData>();
            using (var f = SafetensorsFile.Open(Path.Combine(src, "model.safetensors")))
            {
                foreach (var t in f.Tensors)
                {
                    var w = f.ReadFloats(t.Name);
                    if (adapter is not null)
                        foreach (var m in adapter.Modules)
                            if (t.Name == $"model.layers.{m.Layer}.{LoraTargets.Group(m.Target)}.{LoraTargets.Name(m.Target)}.weight")
                                Fold(w, m, adapter.Config.Scale);
                    tensors.Add(TensorData.F32(t.Name, t.Shape, w));
                }
            }
            SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors);
            var weights = ModelWeights.Load(dir, ModelConfig.Load(dir), WeightFormat.F32);
            // the weights were copied out of the file (F32 packed) or are mapped; either way the mapping survives deletion on Linux
            return new Transformer(weights, new CpuKernels(), maxContext);
        }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>w (Out, In) += scale · B (Out, r) · A (r, In), in double.</summary>
    public static void Fold(float[] w, LoraWeights m, float scale)
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
