using System.Runtime.CompilerServices;
using System.Text.Json;
using Loom.Inference.Tokenization;

namespace Loom.Inference.Tests.Tokenization;

/// <summary>The golden tokenizers under tests/golden/tokenizers, written by tests/reference/tokenizer/make_golden.py.</summary>
internal static class GoldenTokenizers
{
    public static readonly string[] Names = ["gpt2-chatml", "llama3", "qwen2", "llama2-sp", "mistral-metaspace"];

    public sealed record Case(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded, string DecodedSkipSpecial);

    private static readonly Lazy<string> Root = new(() => FindRoot());
    private static readonly Dictionary<string, ITokenizer> Loaded = [];
    private static readonly Dictionary<string, Case[]> LoadedCases = [];

    public static string Folder(string name) => Path.Combine(Root.Value, name);

    public static ITokenizer Load(string name)
    {
        lock (Loaded)
        {
            if (!Loaded.TryGetValue(name, out var tokenizer))
                Loaded[name] = tokenizer = TokenizerLoader.Load(Folder(name));
            return tokenizer;
        }
    }

    public static Case[] Cases(string name)
    {
        lock (LoadedCases)
        {
            if (LoadedCases.TryGetValue(name, out var cases)) return cases;
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder(name), "golden.json")));
            cases = doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
                c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
                c.GetProperty("ids_with_special").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
                c.GetProperty("decoded").GetString()!,
                c.GetProperty("decoded_skip_special").GetString()!)).ToArray();
            LoadedCases[name] = cases;
            return cases;
        }
    }

    /// <summary>(tokenizer name, case index) for every golden case.</summary>
    public static TheoryData<string, int> AllCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var name in Names)
            for (var i = 0; i < Cases(name).Length; i++) data.Add(name, i);
        return data;
    }

    /// <summary>Looks above the test binaries, then above this source file (builds with --artifacts-path put the
    /// binaries outside the repository).</summary>
    private static string FindRoot([CallerFilePath] string sourceFile = "")
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(sourceFile) ?? "" })
        {
            for (var dir = start.Length > 0 ? new DirectoryInfo(start) : null; dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "tests", "golden", "tokenizers");
                if (Directory.Exists(candidate)) return candidate;
            }
        }
        throw new DirectoryNotFoundException($"tests/golden/tokenizers not found above {AppContext.BaseDirectory} or {sourceFile}");
    }
}
