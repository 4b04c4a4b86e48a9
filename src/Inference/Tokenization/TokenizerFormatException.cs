namespace Loom.Inference.Tokenization;

/// <summary>A tokenizer file (tokenizer.json, tokenizer_config.json, generation_config.json) is malformed or uses
/// a feature this loader does not support. The message names the file and the problem.</summary>
public sealed class TokenizerFormatException : Exception
{
    public TokenizerFormatException(string filePath, string problem, Exception? inner = null)
        : base($"{filePath}: {problem}", inner)
    {
        FilePath = filePath;
        Problem = problem;
    }

    public string FilePath { get; }
    public string Problem { get; }
}
