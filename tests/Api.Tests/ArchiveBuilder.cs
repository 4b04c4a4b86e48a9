using System.IO.Compression;
using System.Text;

namespace Loom.Api.Tests;

/// <summary>Hand-built tar blocks and archives for the upload-bomb tests (what a hostile client could send).</summary>
public static class ArchiveBuilder
{
    /// <summary>One 512-byte ustar header block.</summary>
    public static byte[] TarHeader(string name, char type, long size)
    {
        var h = new byte[512];
        Encoding.ASCII.GetBytes(name).CopyTo(h, 0);
        Encoding.ASCII.GetBytes("0000644\0").CopyTo(h, 100);
        Encoding.ASCII.GetBytes("0000000\0").CopyTo(h, 108);
        Encoding.ASCII.GetBytes("0000000\0").CopyTo(h, 116);
        Encoding.ASCII.GetBytes(Convert.ToString(size, 8).PadLeft(11, '0') + "\0").CopyTo(h, 124);
        Encoding.ASCII.GetBytes("00000000000\0").CopyTo(h, 136);
        h[156] = (byte)type;
        Encoding.ASCII.GetBytes("ustar\0" + "00").CopyTo(h, 257);
        for (var i = 148; i < 156; i++) h[i] = (byte)' ';
        var sum = h.Sum(b => (int)b);
        Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ").CopyTo(h, 148);
        return h;
    }

    /// <summary>A .tar.gz whose first entry is a PAX extended header declaring <paramref name="declared"/> bytes, all present (zeros).</summary>
    public static byte[] PaxBombTarGz(long declared)
    {
        var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gz.Write(TarHeader("PaxHeaders/bomb", 'x', declared));
            var zeros = new byte[1 << 20];
            for (long left = (declared + 511) / 512 * 512; left > 0; left -= zeros.Length) gz.Write(zeros, 0, (int)Math.Min(zeros.Length, left));
            gz.Write(new byte[1024]);
        }
        return output.ToArray();
    }

    /// <summary>A .tar.gz of regular files (name, content).</summary>
    public static byte[] TarGz(params (string Name, byte[] Data)[] files)
    {
        var output = new MemoryStream();
        using (var gz = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            foreach (var (name, data) in files)
            {
                gz.Write(TarHeader(name, '0', data.Length));
                gz.Write(data);
                gz.Write(new byte[(512 - data.Length % 512) % 512]);
            }
            gz.Write(new byte[1024]);
        }
        return output.ToArray();
    }

    public static byte[] Zip(params (string Name, byte[] Data)[] files)
    {
        var output = new MemoryStream();
        using (var zip = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var (name, data) in files)
            {
                using var s = zip.CreateEntry(name, CompressionLevel.Fastest).Open();
                s.Write(data);
            }
        return output.ToArray();
    }
}
