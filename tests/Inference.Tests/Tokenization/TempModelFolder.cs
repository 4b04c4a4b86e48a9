using System.Text.Json.Nodes;

namespace Loom.Inference.Tests.Tokenization;

/// <summary>A temporary copy of a golden tokenizer folder whose files a test may edit or replace.</summary>
internal sealed class TempModelFolder : IDisposable
{
    public TempModelFolder(string goldenName)
    {
        Path = Directory.CreateTempSubdirectory("loom-tok-").FullName;
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(System.IO.Path.Combine(GoldenTokenizers.Folder(goldenName), file), System.IO.Path.Combine(Path, file));
    }

    public string Path { get; }
    public string TokenizerJson => System.IO.Path.Combine(Path, "tokenizer.json");
    public string ConfigJson => System.IO.Path.Combine(Path, "tokenizer_config.json");

    public void EditTokenizer(Action<JsonObject> edit) => Edit(TokenizerJson, edit);
    public void EditConfig(Action<JsonObject> edit) => Edit(ConfigJson, edit);

    private static void Edit(string file, Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        edit(root);
        File.WriteAllText(file, root.ToJsonString());
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
