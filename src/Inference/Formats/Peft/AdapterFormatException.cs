namespace Loom.Inference.Formats;

/// <summary>A PEFT adapter folder is malformed, unsupported, or does not fit the base model.
/// The message names the file and, where one is at fault, the tensor.</summary>
public sealed class AdapterFormatException(string file, string problem, Exception? inner = null)
    : Exception($"{file}: {problem}", inner)
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
}
