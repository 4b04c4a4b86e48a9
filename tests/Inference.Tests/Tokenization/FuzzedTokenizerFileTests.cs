using System.Text;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Tokenization;

/// <summary>Randomly damaged tokenizer files either load (and then encode and decode) or fail with
/// <see cref="TokenizerFormatException"/>; never any other exception.</summary>
public sealed class FuzzedTokenizerFileTests
{
    private static readonly string[] Replacements = ["", "[", "]", "{", "}", "\"", ",", ":", "-1", "null", "true", "1e9", "\"x\"", "99999999", " "];

    [Theory]
    [InlineData("gpt2-chatml", 1)]
    [InlineData("llama3", 2)]
    [InlineData("llama2-sp", 3)]
    public void DamagedFilesFailOnlyWithTokenizerFormatException(string name, int seed)
    {
        var random = new Random(seed);
        var original = File.ReadAllText(Path.Combine(GoldenTokenizers.Folder(name), "tokenizer.json"));
        using var dir = new TempModelFolder(name);
        var loaded = 0;
        for (var trial = 0; trial < 400; trial++)
        {
            var text = new StringBuilder(original);
            for (var edits = random.Next(1, 4); edits > 0; edits--)
            {
                var at = random.Next(text.Length);
                var length = Math.Min(random.Next(0, 12), text.Length - at);
                text.Remove(at, length).Insert(at, Replacements[random.Next(Replacements.Length)]);
            }
            if (random.Next(10) == 0) text.Length = random.Next(text.Length);
            File.WriteAllText(dir.TokenizerJson, text.ToString());
            ITokenizer tokenizer;
            try
            {
                tokenizer = TokenizerLoader.Load(dir.Path);
            }
            catch (TokenizerFormatException ex)
            {
                Assert.Equal(dir.TokenizerJson, ex.FilePath);
                continue;
            }
            loaded++;
            var ids = tokenizer.Encode("Hello, world! 123 日本 😀 <|im_start|>", addSpecialTokens: true);
            _ = tokenizer.Decode(ids, skipSpecialTokens: false);
        }
        Assert.True(loaded < 400, "every damaged file loaded; the damage is not reaching the parser");
    }
}
