using Loom.Inference.Kernels.Gpu;
using Loom.Inference.Model;
using Loom.Inference.Model.Gpu;

namespace Loom.Inference.Engine;

/// <summary>The values of Inference:Backend and how a model is put on the one chosen.</summary>
public static class InferenceBackends
{
    public const string Auto = "auto", Cpu = "cpu", Cuda = "cuda", IlgpuCpu = "ilgpu-cpu";
    public static readonly IReadOnlyList<string> All = [Auto, Cpu, Cuda, IlgpuCpu];

    public static bool IsKnown(string? value) => value is not null && All.Contains(value.Trim().ToLowerInvariant());

    /// <summary>The backend <paramref name="value"/> means on this machine: auto becomes cuda when ILGPU lists a CUDA
    /// device, else cpu.</summary>
    public static string Resolve(string value)
    {
        string v = value.Trim().ToLowerInvariant();
        if (!All.Contains(v)) throw new ArgumentException($"Inference:Backend must be one of {string.Join(", ", All)} (got '{value}')");
        return v == Auto ? (GpuAccelerator.CudaAvailable() ? Cuda : Cpu) : v;
    }

    /// <summary>Why KV caches cannot be kept in <paramref name="format"/> on <paramref name="backend"/> (a configured value;
    /// auto is judged once resolved, with <paramref name="configured"/> the value it came from), or null: bf16 KV is for
    /// the CPU kernels only, the GPU backends keep f32 pages on the device.</summary>
    public static string? KvCacheFormatProblem(string backend, KvCacheFormat format, string? configured = null) =>
        format == KvCacheFormat.F32 ? null : CpuOnlyProblem(backend, "KvCacheFormat", format.Name(), configured);

    /// <summary>Why adapters cannot be kept in <paramref name="format"/> pages on <paramref name="backend"/> (as
    /// <see cref="KvCacheFormatProblem"/>), or null: bf16 adapter pages are for the CPU kernels only, the GPU backends'
    /// LoRA kernels read f32 pages.</summary>
    public static string? AdapterPageFormatProblem(string backend, Memory.AdapterPageFormat format, string? configured = null) =>
        format == Memory.AdapterPageFormat.F32 ? null : CpuOnlyProblem(backend, "AdapterPageFormat", Memory.AdapterPageFormats.Name(format), configured);

    /// <summary>The refusal of Inference:<paramref name="option"/> = <paramref name="value"/>, which only the CPU kernels
    /// read, for a model already put on a device (<paramref name="runsOn"/>: its backend description).</summary>
    internal static string CpuOnlyOnDevice(string option, string value, string runsOn) =>
        $"Inference:{option} = {value} is supported by the CPU backend only, and this model runs on {runsOn}: set Inference:{option} = f32, or Inference:Backend = cpu";

    /// <summary>Why Inference:<paramref name="option"/> = <paramref name="value"/>, which only the CPU kernels read, cannot
    /// be served on <paramref name="backend"/>, or null when the backend is the CPU's.</summary>
    private static string? CpuOnlyProblem(string backend, string option, string value, string? configured)
    {
        string v = backend.Trim().ToLowerInvariant();
        if (v is not (Cuda or IlgpuCpu)) return null;
        string chosen = configured is null ? $"Inference:Backend is {v}" : $"Inference:Backend = {configured.Trim()} chose {v} on this machine";
        return $"Inference:{option} = {value} is supported by the CPU backend only, and {chosen}: set Inference:{option} = f32, or Inference:Backend = cpu";
    }

    /// <summary>Puts <paramref name="model"/> on the resolved backend (cpu: unchanged) and returns what it runs on.</summary>
    public static string Apply(Transformer model, string value)
    {
        string chosen = Resolve(value);
        if (chosen == Cpu) return model.BackendDescription;
        var device = chosen == Cuda ? GpuAccelerator.Cuda() : GpuAccelerator.Cpu();
        try
        {
            model.UseBackend(new DeviceForward(device, model));
        }
        catch
        {
            device.Dispose();
            throw;
        }
        return model.BackendDescription;
    }
}
