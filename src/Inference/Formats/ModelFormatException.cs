namespace Loom.Inference.Formats;

/// <summary>A model file (safetensors, config.json, index) is malformed or unsupported.
/// The message always names the file and the problem.</summary>
public sealed class ModelFormatException(string file, string problem, Exception? inner = null)
    : Exception($"{file}: {problem}", inner)
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
}
