using System.Formats.Tar;
using System.IO.Compression;
using Loom.Api.Completions;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Adapters;

/// <summary>
/// Turns an upload into a PEFT folder on disk: either the two files as form parts, or one .zip / .tar.gz /
/// .tgz archive holding them (at the top or in one folder). Nothing else is extracted; sizes are bounded.
/// </summary>
internal sealed class AdapterUpload : IDisposable
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";
    private static readonly string[] Wanted = [ConfigFile, WeightsFile];

    public string Folder { get; }

    private AdapterUpload(string folder) => Folder = folder;

    public static async Task<AdapterUpload> FromFormAsync(IFormFileCollection files, long maxBytes, CancellationToken ct)
    {
        var upload = new AdapterUpload(Directory.CreateTempSubdirectory("loom-adapter-").FullName);
        try
        {
            var archive = files.FirstOrDefault(f => IsArchive(f.FileName));
            if (archive is not null)
            {
                if (files.Count > 1) throw new InvalidRequestException("Send either one archive or the two adapter files, not both.", "file");
                // A plain seekable copy: archive readers seek, and must not see the form's wrapper stream.
                await using var s = new FileStream(Path.Combine(upload.Folder, ".archive"), FileMode.CreateNew, FileAccess.ReadWrite,
                    FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
                await archive.CopyToAsync(s, ct);
                s.Position = 0;
                if (archive.FileName.EndsWith(".zip", StringComparison.OrdinalIgnoreCase)) upload.ExtractZip(s, maxBytes);
                else await upload.ExtractTarGzAsync(s, maxBytes, ct);
            }
            else
            {
                foreach (var name in Wanted)
                {
                    var part = files.FirstOrDefault(f => f.Name == name || Path.GetFileName(f.FileName) == name)
                               ?? throw new InvalidRequestException($"'{name}' is missing: upload the PEFT folder's {ConfigFile} and {WeightsFile}, or one .zip/.tar.gz of the folder.", name);
                    await using var target = File.Create(Path.Combine(upload.Folder, name));
                    await part.CopyToAsync(target, ct);
                }
            }
            foreach (var name in Wanted)
                if (!File.Exists(Path.Combine(upload.Folder, name)))
                    throw new InvalidRequestException($"The archive has no {name}.", "file");
            return upload;
        }
        catch
        {
            upload.Dispose();
            throw;
        }
    }

    private static bool IsArchive(string name) =>
        name.EndsWith(".zip", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".tar.gz", StringComparison.OrdinalIgnoreCase)
        || name.EndsWith(".tgz", StringComparison.OrdinalIgnoreCase);

    /// <summary>An entry's file name if it is one of the two wanted files at depth 0 or 1, else null.</summary>
    private static string? WantedName(string entryPath)
    {
        var parts = entryPath.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length is 0 or > 2 || parts.Any(p => p == "..")) return null;
        return Wanted.FirstOrDefault(w => w == parts[^1]);
    }

    private void ExtractZip(Stream s, long maxBytes)
    {
        try
        {
            using var zip = new ZipArchive(s, ZipArchiveMode.Read);
            foreach (var entry in zip.Entries)
            {
                if (WantedName(entry.FullName) is not { } name) continue;
                using var from = entry.Open();
                Save(from, name, maxBytes);
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException)
        {
            throw new InvalidRequestException($"The .zip archive is corrupt: {e.Message}", "file");
        }
    }

    private async Task ExtractTarGzAsync(Stream s, long maxBytes, CancellationToken ct)
    {
        try
        {
            await using var gz = new GZipStream(s, CompressionMode.Decompress);
            await using var tar = new TarReader(gz);
            while (await tar.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null) continue;
                if (WantedName(entry.Name) is not { } name) continue;
                Save(entry.DataStream, name, maxBytes);
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or IOException or ArgumentException)
        {
            throw new InvalidRequestException($"The .tar.gz archive is corrupt: {e.Message}", "file");
        }
    }

    private void Save(Stream from, string name, long maxBytes)
    {
        var path = Path.Combine(Folder, name);
        if (File.Exists(path)) throw new InvalidRequestException($"The archive holds more than one {name}.", "file");
        using var to = File.Create(path);
        var buffer = new byte[1 << 16];
        long total = 0;
        int n;
        while ((n = from.Read(buffer)) > 0)
        {
            total += n;
            if (total > maxBytes) throw new InvalidRequestException($"{name} in the archive is larger than the {maxBytes}-byte upload limit.", "file");
            to.Write(buffer, 0, n);
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
