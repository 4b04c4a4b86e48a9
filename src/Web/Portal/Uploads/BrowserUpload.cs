using Microsoft.AspNetCore.Components.Forms;
using Microsoft.AspNetCore.Http;

namespace Loom.Web.Portal.Uploads;

/// <summary>
/// Files picked in the browser, copied over the circuit into temporary files (reporting bytes as they arrive) and
/// handed to the API's services as a form file collection. Deletes its files when disposed.
/// </summary>
public sealed class BrowserUpload : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("loom-portal-upload-").FullName;
    private readonly List<(string Path, string FileName, long Length)> _files = [];
    private readonly List<Stream> _open = [];

    /// <summary>Copies the files, at most <paramref name="maxBytes"/> in all; <paramref name="progress"/> gets the bytes copied so far.</summary>
    public static async Task<BrowserUpload> CopyAsync(IReadOnlyList<IBrowserFile> files, long maxBytes, Func<long, Task> progress, CancellationToken ct)
    {
        var total = files.Sum(f => f.Size);
        if (total > maxBytes) throw new UploadTooLargeException($"The upload is {Bytes.Format(total)}; the limit is {Bytes.Format(maxBytes)}.");
        var upload = new BrowserUpload();
        try
        {
            long copied = 0;
            var buffer = new byte[1 << 16];
            var lastReport = 0L;
            foreach (var file in files)
            {
                var path = Path.Combine(upload._folder, $"{upload._files.Count}");
                await using (var from = file.OpenReadStream(maxBytes, ct))
                await using (var to = File.Create(path))
                {
                    int n;
                    while ((n = await from.ReadAsync(buffer, ct)) > 0)
                    {
                        await to.WriteAsync(buffer.AsMemory(0, n), ct);
                        copied += n;
                        if (copied - lastReport >= total / 50 || copied == total)
                        {
                            lastReport = copied;
                            await progress(copied);
                        }
                    }
                }
                upload._files.Add((path, Path.GetFileName(file.Name), file.Size));
            }
            await progress(total);
            return upload;
        }
        catch
        {
            upload.Dispose();
            throw;
        }
    }

    /// <summary>The copied files as a form's file parts named "file", each with its browser file name.</summary>
    public IFormFileCollection AsForm()
    {
        var form = new FormFileCollection();
        foreach (var (path, fileName, length) in _files)
        {
            var stream = File.OpenRead(path);
            _open.Add(stream);
            form.Add(new FormFile(stream, 0, length, "file", fileName));
        }
        return form;
    }

    public void Dispose()
    {
        foreach (var s in _open) s.Dispose();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

public sealed class UploadTooLargeException(string message) : Exception(message);

public static class Bytes
{
    public static string Format(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => $"{bytes / 1024.0:0.#} KiB",
        < 1024L * 1024 * 1024 => $"{bytes / (1024.0 * 1024):0.#} MiB",
        _ => $"{bytes / (1024.0 * 1024 * 1024):0.##} GiB",
    };
}
