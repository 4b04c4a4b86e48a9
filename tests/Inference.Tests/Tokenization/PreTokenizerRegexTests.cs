using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Tokenization;

public sealed class PreTokenizerRegexTests
{
    private static string[] Split(string pattern, string text)
    {
        var pieces = new List<string>();
        new CodePointRegex(pattern).Matches(text, (start, length) => pieces.Add(text.Substring(start, length)));
        return pieces.ToArray();
    }

    [Fact]
    public void Gpt2PatternSplitsWordsNumbersPunctuationAndSpaceRuns()
    {
        Assert.Equal(["I", "'m", " ", " here", " 123", "!!", "\n", "\n", "ok"], Split(PreTokenizerPatterns.Gpt2, "I'm  here 123!!\n\nok"));
    }

    [Fact]
    public void Gpt2ContractionsAreCaseSensitiveButLlama3AndQwen2AreNot()
    {
        Assert.Equal(["HE", "'", "S"], Split(PreTokenizerPatterns.Gpt2, "HE'S"));
        Assert.Equal(["HE", "'S"], Split(PreTokenizerPatterns.Llama3, "HE'S"));
        Assert.Equal(["HE", "'S"], Split(PreTokenizerPatterns.Qwen2, "HE'S"));
    }

    [Fact]
    public void Llama3GroupsDigitsByThreeAndQwen2SplitsEveryDigit()
    {
        Assert.Equal(["123", "456", "7"], Split(PreTokenizerPatterns.Llama3, "1234567"));
        Assert.Equal(["1", "2", "3", "4"], Split(PreTokenizerPatterns.Qwen2, "1234"));
    }

    [Fact]
    public void TrailingSpaceRunLeavesLastSpaceForTheNextWord()
    {
        foreach (var pattern in new[] { PreTokenizerPatterns.Gpt2, PreTokenizerPatterns.Llama3, PreTokenizerPatterns.Qwen2 })
            Assert.Equal(["a", "  ", " b"], Split(pattern, "a   b"));
    }

    [Fact]
    public void Llama3KeepsNewlinesWithPunctuationAndLeadsLettersWithOneNonLetter()
    {
        Assert.Equal(["x", ":\n\n", "\t", "\tif"], Split(PreTokenizerPatterns.Llama3, "x:\n\n\t\tif"));
    }

    [Fact]
    public void CodePointsOutsideTheBmpKeepTheirCategory()
    {
        // An emoji (So) may lead a letter run in Llama-3, like any other non-letter; math bold letters are letters.
        Assert.Equal(["😀abc"], Split(PreTokenizerPatterns.Llama3, "😀abc"));
        Assert.Equal(["𝐀𝐁𝐂", " 𠀀𠀁"], Split(PreTokenizerPatterns.Gpt2, "𝐀𝐁𝐂 𠀀𠀁"));
        Assert.Equal(["𝟙", "𝟚"], Split(PreTokenizerPatterns.Qwen2, "𝟙𝟚"));
        Assert.Equal(["👨‍👩‍👧"], Split(PreTokenizerPatterns.Gpt2, "👨‍👩‍👧"));
    }
}
