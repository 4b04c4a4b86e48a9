using System.Buffers.Binary;
using System.Formats.Tar;
using System.IO.Compression;
using Loom.Api.Completions;
using Loom.Api.Limits;
using Microsoft.AspNetCore.Http;

namespace Loom.Api.Adapters;

/// <summary>
/// Turns an upload into a PEFT folder on disk: either the two files as form parts, or one .zip / .tar.gz /
/// .tgz archive holding them (at the top or in one folder). Nothing else is extracted. Every size is bounded
/// (<see cref="UploadOptions"/>): bytes unpacked, entries, tar metadata records, the config file and the
/// safetensors header, all checked while reading so a bomb is refused before it costs memory or disk.
/// </summary>
internal sealed class AdapterUpload : IDisposable
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";
    private static readonly string[] Wanted = [ConfigFile, WeightsFile];

    private readonly UploadOptions _limits;
    private long _unpacked;

    public string Folder { get; }

    /// <summary>Bytes of the two files.</summary>
    public long Bytes => Wanted.Sum(n => new FileInfo(Path.Combine(Folder, n)).Length);

    private AdapterUpload(string folder, UploadOptions limits) => (Folder, _limits) = (folder, limits);

    public static async Task<AdapterUpload> FromFormAsync(IFormFileCollection files, UploadOptions limits, CancellationToken ct)
    {
        var upload = new AdapterUpload(Directory.CreateTempSubdirectory("loom-adapter-").FullName, limits);
        try
        {
            var archive = files.FirstOrDefault(f => IsArchive(f.FileName));
            if (archive is not null)
            {
                if (files.Count > 1) throw new InvalidRequestException("Send either one archive or the two adapter files, not both.", "file");
                if (archive.FileName.EndsWith(".zip", StringComparison.OrdinalIgnoreCase))
                {
                    // A plain seekable copy: the zip reader seeks, and must not see the form's wrapper stream.
                    await using var s = new FileStream(Path.Combine(upload.Folder, ".archive"), FileMode.CreateNew, FileAccess.ReadWrite,
                        FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
                    await archive.CopyToAsync(s, ct);
                    s.Position = 0;
                    await upload.ExtractZipAsync(s, ct);
                }
                else
                {
                    // A tar.gz reads front to back: straight from the form's buffer, no copy.
                    await using var s = archive.OpenReadStream();
                    await upload.ExtractTarGzAsync(s, ct);
                }
            }
            else
            {
                foreach (var name in Wanted)
                {
                    var part = files.FirstOrDefault(f => f.Name == name || Path.GetFileName(f.FileName) == name)
                               ?? throw new InvalidRequestException($"'{name}' is missing: upload the PEFT folder's {ConfigFile} and {WeightsFile}, or one .zip/.tar.gz of the folder.", name);
                    await using var from = part.OpenReadStream();
                    await upload.SaveAsync(from, name, ct);
                }
            }
            foreach (var name in Wanted)
                if (!File.Exists(Path.Combine(upload.Folder, name)))
                    throw new InvalidRequestException($"The archive has no {name}.", "file");
            upload.CheckSafetensorsHeader();
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

    private async Task ExtractZipAsync(Stream s, CancellationToken ct)
    {
        try
        {
            ZipDirectoryCheck.Check(s, _limits.MaxArchiveEntries);
            using var zip = new ZipArchive(s, ZipArchiveMode.Read);
            foreach (var entry in zip.Entries)
            {
                if (WantedName(entry.FullName) is not { } name) continue;
                await using var from = entry.Open();
                await SaveAsync(from, name, ct);
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException or NotSupportedException)
        {
            throw new InvalidRequestException($"The .zip archive is corrupt: {e.Message}", "file");
        }
    }

    private async Task ExtractTarGzAsync(Stream s, CancellationToken ct)
    {
        try
        {
            await using var gz = new GZipStream(s, CompressionMode.Decompress, leaveOpen: true);
            await using var guarded = new TarStreamGuard(gz, _limits.MaxDecompressedBytes, _limits.MaxArchiveEntries, _limits.MaxTarMetadataBytes);
            await using var tar = new TarReader(guarded);
            while (await tar.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null) continue;
                if (WantedName(entry.Name) is not { } name) continue;
                await SaveAsync(entry.DataStream, name, ct);
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or IOException or ArgumentException or NotSupportedException)
        {
            throw new InvalidRequestException($"The .tar.gz archive is corrupt: {e.Message}", "file");
        }
    }

    private long LimitOf(string name) => name == ConfigFile ? _limits.MaxAdapterConfigBytes : _limits.MaxDecompressedBytes;

    private async Task SaveAsync(Stream from, string name, CancellationToken ct)
    {
        var path = Path.Combine(Folder, name);
        if (File.Exists(path)) throw new InvalidRequestException($"The upload holds more than one {name}.", "file");
        var limit = LimitOf(name);
        await using var to = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
        var buffer = new byte[1 << 16]; // (64 KiB) copy buffer
        long written = 0;
        int n;
        while ((n = await from.ReadAsync(buffer, ct)) > 0)
        {
            written += n;
            _unpacked += n;
            if (written > limit) throw new InvalidRequestException($"{name} is larger than the {limit}-byte limit.", "file", "file_too_large");
            if (_unpacked > _limits.MaxDecompressedBytes)
                throw new InvalidRequestException($"The adapter files are larger than the {_limits.MaxDecompressedBytes}-byte limit.", "file", "file_too_large");
            await to.WriteAsync(buffer.AsMemory(0, n), ct);
        }
    }

    /// <summary>The safetensors header is parsed whole; an adapter's is a tensor table of kilobytes.</summary>
    private void CheckSafetensorsHeader()
    {
        using var f = File.OpenRead(Path.Combine(Folder, WeightsFile));
        Span<byte> len = stackalloc byte[8];
        if (f.ReadAtLeast(len, 8, throwOnEndOfStream: false) < 8) return; // too short: the adapter reader reports it
        var header = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (header > (ulong)_limits.MaxSafetensorsHeaderBytes)
            throw new InvalidRequestException($"Invalid adapter: {WeightsFile}: its header declares {header} bytes; at most {_limits.MaxSafetensorsHeaderBytes} are accepted.",
                "file", "invalid_adapter");
    }

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
