namespace Loom.Inference.Tokenization;

/// <summary>The pre-tokenizer regexes of the common byte-level BPE families, as written in their tokenizer.json
/// files. All three run on .NET Regex through <see cref="CodePointRegex"/> (which makes \p{L} and \p{N} see
/// code points outside the BMP).</summary>
public static class PreTokenizerPatterns
{
    /// <summary>GPT-2 (also what ByteLevel with use_regex true applies).</summary>
    public const string Gpt2 = PreTokenizer.Gpt2Pattern;

    /// <summary>Llama-3: case-insensitive contractions, digits in groups of up to three.</summary>
    public const string Llama3 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2: as Llama-3 but one digit per piece.</summary>
    public const string Qwen2 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
}
