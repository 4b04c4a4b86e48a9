using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Loom.Data.Blobs;
using Loom.Inference.Formats;
using Loom.Inference.Training;

namespace Loom.Jobs.FineTuning;

/// <summary>One file of a checkpoint as its manifest records it.</summary>
public sealed record CheckpointFile(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("bytes")] long Bytes,
    [property: JsonPropertyName("sha256")] string Sha256);

/// <summary>manifest.json of a checkpoint folder.</summary>
public sealed record CheckpointManifest(
    [property: JsonPropertyName("format")] string Format,
    [property: JsonPropertyName("step")] int Step,
    [property: JsonPropertyName("files")] IReadOnlyList<CheckpointFile> Files);

/// <summary>
/// A checkpoint on disk: a folder holding the adapter (PEFT safetensors + config), <c>training_state.bin</c> (optimizer
/// moments, RNG state, data cursor) and <c>manifest.json</c> with the size and SHA-256 of every other file. It is written
/// under a temporary name, every file fsynced, then renamed into place, so a folder under its final name is complete;
/// a torn or altered one fails <see cref="Verify"/> and is never loaded. As a blob it is an uncompressed tar written
/// with fixed metadata (equal checkpoints, equal hashes).
/// </summary>
public static class CheckpointFiles
{
    public const string Format = "loom-checkpoint-v1";
    public const string ManifestFile = "manifest.json";
    private static readonly string[] Required = [AdapterFileNames.Config, AdapterFileNames.Weights, TrainingSnapshot.StateFileName];
    private static readonly DateTimeOffset FixedTime = DateTimeOffset.UnixEpoch;
    /// <summary>Bound on one file of a checkpoint read back.</summary>
    private const long MaxFileBytes = TrainingSnapshot.MaxBytes;

    public static string FolderName(int step) => $"ckpt-step-{step:D8}";

    /// <summary>Writes <paramref name="snapshot"/> as <c>root/ckpt-step-N</c> (temporary name, fsync, atomic rename); returns the folder.</summary>
    public static string Write(TrainingSnapshot snapshot, string root, string? baseModelName)
    {
        Directory.CreateDirectory(root);
        string final = Path.Combine(root, FolderName(snapshot.Step));
        string temp = Path.Combine(root, $".tmp-{FolderName(snapshot.Step)}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temp);
        try
        {
            var (config, modules) = snapshot.ToAdapter(baseModelName);
            PeftAdapterWriter.Write(temp, config, modules);
            using (var fs = new FileStream(Path.Combine(temp, TrainingSnapshot.StateFileName), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
                snapshot.WriteTo(fs);
            var files = Required.Select(name =>
            {
                string path = Path.Combine(temp, name);
                return new CheckpointFile(name, new FileInfo(path).Length, Sha256Of(path));
            }).ToList();
            using (var fs = new FileStream(Path.Combine(temp, ManifestFile), FileMode.CreateNew, FileAccess.Write))
                JsonSerializer.Serialize(fs, new CheckpointManifest(Format, snapshot.Step, files));
            // every file on disk before the rename: one fsync each, all at once (the file system's journal takes them together)
            Parallel.ForEach(Required.Append(ManifestFile), name => Fsync(Path.Combine(temp, name)));
            // A folder under the final name is complete; one left by an earlier run of this step holds the same state.
            if (Directory.Exists(final)) Directory.Delete(final, recursive: true);
            Directory.Move(temp, final);
            return final;
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    /// <summary>Checks the folder against its manifest: every file present with its size and SHA-256; throws
    /// <see cref="InvalidDataException"/> naming the first problem.</summary>
    public static CheckpointManifest Verify(string folder)
    {
        string manifestPath = Path.Combine(folder, ManifestFile);
        if (!File.Exists(manifestPath)) throw new InvalidDataException($"{folder}: no {ManifestFile} (an incomplete checkpoint)");
        if (new FileInfo(manifestPath).Length > 1 << 20) throw new InvalidDataException($"{folder}: {ManifestFile} is too large");
        CheckpointManifest manifest;
        try { manifest = JsonSerializer.Deserialize<CheckpointManifest>(File.ReadAllBytes(manifestPath)) ?? throw new InvalidDataException("empty manifest"); }
        catch (JsonException e) { throw new InvalidDataException($"{folder}: {ManifestFile} is not valid ({e.Message})"); }
        if (manifest.Format != Format || manifest.Files is null) throw new InvalidDataException($"{folder}: not a {Format} manifest");
        foreach (var name in Required)
            if (!manifest.Files.Any(f => f.Name == name)) throw new InvalidDataException($"{folder}: the manifest does not list {name}");
        foreach (var f in manifest.Files)
        {
            if (f.Name != Path.GetFileName(f.Name) || f.Name == ManifestFile) throw new InvalidDataException($"{folder}: the manifest names a bad file '{f.Name}'");
            string path = Path.Combine(folder, f.Name);
            var info = new FileInfo(path);
            if (!info.Exists) throw new InvalidDataException($"{folder}: {f.Name} is missing");
            if (info.Length != f.Bytes || info.Length > MaxFileBytes) throw new InvalidDataException($"{folder}: {f.Name} is {info.Length} bytes, the manifest says {f.Bytes}");
            if (!string.Equals(Sha256Of(path), f.Sha256, StringComparison.OrdinalIgnoreCase)) throw new InvalidDataException($"{folder}: {f.Name} does not match its SHA-256");
        }
        return manifest;
    }

    /// <summary>The snapshot of a verified checkpoint folder.</summary>
    public static TrainingSnapshot Load(string folder)
    {
        var manifest = Verify(folder);
        var snapshot = TrainingSnapshot.Load(folder);
        if (snapshot.Step != manifest.Step) throw new InvalidDataException($"{folder}: the state is of step {snapshot.Step}, the manifest says {manifest.Step}");
        return snapshot;
    }

    /// <summary>Stores the folder (manifest included) as one blob.</summary>
    public static async Task<BlobRef> StoreAsync(IBlobStore blobs, string folder, CancellationToken ct)
    {
        var temp = Path.GetTempFileName();
        try
        {
            await using (var file = File.Create(temp))
            await using (var tar = new TarWriter(file, TarEntryFormat.Ustar, leaveOpen: false))
            {
                foreach (var name in Required.Append(ManifestFile))
                {
                    await using var data = File.OpenRead(Path.Combine(folder, name));
                    var entry = new UstarTarEntry(TarEntryType.RegularFile, name)
                    {
                        DataStream = data, ModificationTime = FixedTime, Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead,
                    };
                    await tar.WriteEntryAsync(entry, ct);
                }
            }
            await using var content = File.OpenRead(temp);
            return await blobs.PutAsync(content, ct);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>Unpacks a checkpoint blob into <paramref name="folder"/> (created); the caller verifies it.</summary>
    public static async Task ExtractAsync(IBlobStore blobs, string sha256, string folder, CancellationToken ct)
    {
        Directory.CreateDirectory(folder);
        await using var blob = blobs.OpenRead(sha256);
        await using var tar = new TarReader(blob);
        while (await tar.GetNextEntryAsync(copyData: false, ct) is { } entry)
        {
            if (!Required.Append(ManifestFile).Contains(entry.Name) || entry.DataStream is null) continue;
            if (entry.Length > MaxFileBytes) throw new InvalidDataException($"checkpoint blob {sha256}: {entry.Name} is too large");
            await using var to = File.Create(Path.Combine(folder, entry.Name));
            await entry.DataStream.CopyToAsync(to, ct);
        }
        // Read to the end so the store checks the hash.
        await blob.CopyToAsync(Stream.Null, ct);
    }

    private static void Fsync(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        fs.Flush(flushToDisk: true);
    }

    private static string Sha256Of(string path)
    {
        using var fs = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(fs));
    }
}

/// <summary>File names of a PEFT adapter folder.</summary>
internal static class AdapterFileNames
{
    public const string Config = "adapter_config.json";
    public const string Weights = "adapter_model.safetensors";
}
