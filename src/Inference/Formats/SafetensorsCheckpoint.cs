using System.Text.Json;

namespace Loom.Inference.Formats;

/// <summary>The weights of a Hugging Face model folder: one model.safetensors, or shards named by
/// model.safetensors.index.json ("weight_map": tensor name → shard file).</summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, SafetensorsFile> _byTensor;
    private readonly List<SafetensorsFile> _files;

    private SafetensorsCheckpoint(Dictionary<string, SafetensorsFile> byTensor, List<SafetensorsFile> files)
    {
        _byTensor = byTensor;
        _files = files;
    }

    public IEnumerable<string> TensorNames => _byTensor.Keys;

    public static SafetensorsCheckpoint Open(string directory)
    {
        string index = Path.Combine(directory, IndexFileName);
        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(index)) return OpenSharded(directory, index);
        if (!File.Exists(single))
            throw new ModelFormatException(directory, $"neither {SingleFileName} nor {IndexFileName} exists");
        var file = SafetensorsFile.Open(single);
        return new SafetensorsCheckpoint(file.Tensors.ToDictionary(t => t.Name, _ => file, StringComparer.Ordinal), [file]);
    }

    private static SafetensorsCheckpoint OpenSharded(string directory, string indexPath)
    {
        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException(indexPath, "missing 'weight_map' object");
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new ModelFormatException(indexPath, $"weight_map entry '{p.Name}' is not a file name");
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || Path.GetFileName(shard) != shard)
                    throw new ModelFormatException(indexPath, $"weight_map entry '{p.Name}' names '{shard}', which is not a plain file name");
                weightMap[p.Name] = shard;
            }
        }
        catch (JsonException e) { throw new ModelFormatException(indexPath, $"not valid JSON ({e.Message})"); }

        var files = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var byTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var shard in weightMap.Values.Distinct())
            {
                string path = Path.Combine(directory, shard);
                if (!File.Exists(path)) throw new ModelFormatException(indexPath, $"shard '{shard}' does not exist");
                files[shard] = SafetensorsFile.Open(path);
            }
            foreach (var (tensor, shard) in weightMap)
            {
                var f = files[shard];
                if (!f.Contains(tensor))
                    throw new ModelFormatException(f.Path, $"tensor '{tensor}' is listed in {IndexFileName} but missing from this shard");
                byTensor[tensor] = f;
            }
        }
        catch
        {
            foreach (var f in files.Values) f.Dispose();
            throw;
        }
        return new SafetensorsCheckpoint(byTensor, files.Values.ToList());
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    public SafetensorsFile FileOf(string name) =>
        _byTensor.TryGetValue(name, out var f) ? f : throw new ModelFormatException(_files.Count == 1 ? _files[0].Path : IndexFileName, $"tensor '{name}' not found");

    public TensorInfo GetInfo(string name) => FileOf(name).GetInfo(name);

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
