using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Loom.Inference.Formats;

namespace Loom.Inference.Tests.Formats;

public sealed class SafetensorsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("loom-st-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string P(string name) => Path.Combine(_dir, name);

    internal static List<TensorData> SampleTensors()
    {
        var f = new float[] { 1.5f, -2.25f, 3e-3f, 65504f, -0f, 7f };
        return
        [
            TensorData.F32("a.f32", [2, 3], f),
            new TensorData("b.f16", TensorDType.F16, [3, 2], MemoryMarshal.AsBytes(f.Select(x => (Half)x).ToArray().AsSpan()).ToArray()),
            TensorData.BF16("c.bf16", [6], f.Select(DTypeConvert.FloatToBFloat16).ToArray()),
            new TensorData("d.i32", TensorDType.I32, [2], MemoryMarshal.AsBytes(new[] { 7, -9 }.AsSpan()).ToArray()),
            new TensorData("e.empty", TensorDType.F32, [0, 4], Array.Empty<byte>()),
        ];
    }

    [Fact]
    public void WriteThenReadRoundTripsEveryDtype()
    {
        SafetensorsWriter.Write(P("m.safetensors"), SampleTensors(), new Dictionary<string, string> { ["format"] = "pt" });
        using var f = SafetensorsFile.Open(P("m.safetensors"));
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(5, f.Tensors.Count);
        Assert.Equal(new float[] { 1.5f, -2.25f, 3e-3f, 65504f, -0f, 7f }, f.ReadFloats("a.f32"));
        Assert.Equal([3L, 2L], f.GetInfo("b.f16").Shape);
        Assert.Equal(f.ReadFloats("a.f32").Select(x => (float)(Half)x), f.ReadFloats("b.f16"));
        Assert.Equal(new float[] { 1.5f, -2.25f, 0.0030059814453125f, 65536f, -0f, 7f }, f.ReadFloats("c.bf16"));
        Assert.Equal([7, -9], MemoryMarshal.Cast<byte, int>(f.GetBytes("d.i32")).ToArray());
        Assert.Empty(f.ReadFloats("e.empty"));
        var e = Assert.Throws<ModelFormatException>(() => f.ReadFloats("d.i32"));
        Assert.Contains("I32", e.Message);
        Assert.Contains("not found", Assert.Throws<ModelFormatException>(() => f.GetInfo("zzz")).Message);
        // header is padded to 8 bytes so the data section is aligned
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(File.ReadAllBytes(P("m.safetensors"))) % 8);
    }

    [Fact]
    public void Bf16RoundsToNearestEven()
    {
        Assert.Equal(0x3F80, DTypeConvert.FloatToBFloat16(1f));
        Assert.Equal(0x3F80, DTypeConvert.FloatToBFloat16(BitConverter.Int32BitsToSingle(0x3F808000)));  // tie → even
        Assert.Equal(0x3F82, DTypeConvert.FloatToBFloat16(BitConverter.Int32BitsToSingle(0x3F818000)));  // tie → even (up)
        Assert.Equal(0x3F81, DTypeConvert.FloatToBFloat16(BitConverter.Int32BitsToSingle(0x3F808001)));
        Assert.True(float.IsNaN(BitConverter.Int32BitsToSingle(DTypeConvert.FloatToBFloat16(float.NaN) << 16)));
    }

    private string WriteRaw(string name, string header, int dataBytes, ulong? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        File.WriteAllBytes(P(name), bytes);
        return P(name);
    }

    public static TheoryData<string, string, int, string> Malformed() => new()
    {
        { "overlap", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 16, "overlap" },
        { "out of range", """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8, "out of range" },
        { "shape mismatch", """{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "need 12 bytes" },
        { "dtype mismatch", """{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}}""", 8, "need 4 bytes" },
        { "unknown dtype", """{"a":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}}""", 2, "unsupported dtype 'F8'" },
        { "negative offset", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}""", 8, "invalid data_offsets" },
        { "reversed offsets", """{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}""", 8, "invalid data_offsets" },
        { "offsets not numbers", """{"a":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}""", 8, "invalid data_offsets" },
        { "huge shape", """{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}""", 8, "too large" },
        { "negative dim", """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 8, "non-negative" },
        { "missing dtype", """{"a":{"shape":[1],"data_offsets":[0,4]}}""", 8, "dtype" },
        { "not an object", """[1,2,3]""", 0, "not a JSON object" },
        { "bad json", """{"a":""", 0, "not valid JSON" },
        { "bad metadata", """{"__metadata__":{"x":1}}""", 0, "__metadata__" },
        { "deep nesting", new string('[', 100) + new string(']', 100), 0, "not valid JSON" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedHeadersFailCleanly(string file, string header, int dataBytes, string expected)
    {
        string path = WriteRaw(file.Replace(' ', '_') + ".safetensors", header, dataBytes);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));
        Assert.Contains(expected, e.Message);
        Assert.Equal(path, e.File);
        Assert.StartsWith(path, e.Message);
    }

    [Fact]
    public void TruncatedFilesAndBadHeaderLengthsFailCleanly()
    {
        File.WriteAllBytes(P("short"), [1, 2, 3]);
        Assert.Contains("truncated", Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(P("short"))).Message);
        File.WriteAllBytes(P("empty"), []);
        Assert.Contains("truncated", Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(P("empty"))).Message);

        string past = WriteRaw("past", "{}", 0, declaredLength: 1UL << 40);
        Assert.Contains("past the end", Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(past)).Message);
        string max = WriteRaw("max", "{}", 0, declaredLength: ulong.MaxValue);
        Assert.Contains("past the end", Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(max)).Message);

        // a valid file cut short: the last tensor's range now runs past the end
        SafetensorsWriter.Write(P("full"), SampleTensors());
        var bytes = File.ReadAllBytes(P("full"));
        File.WriteAllBytes(P("cut"), bytes[..^5]);
        Assert.Contains("out of range", Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(P("cut"))).Message);
    }

    [Fact]
    public void NonUtf8AndHugeHeadersFailWithoutAllocatingThem()
    {
        var bytes = new byte[8 + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 4);
        bytes[8] = (byte)'{';
        bytes[9] = 0xFF;
        bytes[10] = 0xFE;
        bytes[11] = (byte)'}';
        File.WriteAllBytes(P("utf8"), bytes);
        Assert.Contains("UTF-8", Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(P("utf8"))).Message);

        // a sparse file big enough to hold the declared header: refused by size before any read
        using (var fs = new FileStream(P("huge"), FileMode.Create))
        {
            var len = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)SafetensorsFile.MaxHeaderBytes + 1);
            fs.Write(len);
            fs.SetLength(SafetensorsFile.MaxHeaderBytes + 64);
        }
        long before = GC.GetTotalAllocatedBytes(precise: true);
        Assert.Contains("exceeds", Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(P("huge"))).Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 1 << 20);
    }

    [Fact]
    public void FuzzedFilesFailOnlyWithModelFormatException()
    {
        SafetensorsWriter.Write(P("seed"), SampleTensors());
        var valid = File.ReadAllBytes(P("seed"));
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        var rng = new Random(12345);
        int clean = 0, ok = 0;
        string path = P("fuzz");
        for (int iter = 0; iter < 1500; iter++)
        {
            var b = (byte[])valid.Clone();
            switch (rng.Next(6))
            {
                case 0: // flip a few bytes anywhere in the header
                    for (int k = rng.Next(1, 4); k > 0; k--) b[rng.Next(headerEnd)] ^= (byte)rng.Next(1, 256);
                    break;
                case 1: // replace a header character by a digit, quote, bracket or minus sign
                    b[rng.Next(8, headerEnd)] = (byte)"0123456789\"[]{},-:eE.x"[rng.Next(22)];
                    break;
                case 2: // truncate
                    b = b[..rng.Next(b.Length)];
                    break;
                case 3: // random header length
                    BinaryPrimitives.WriteUInt64LittleEndian(b, rng.Next(3) == 0 ? (ulong)rng.NextInt64() : (ulong)rng.Next(headerEnd + 16));
                    break;
                case 4: // duplicate a header slice over another place
                    {
                        int from = rng.Next(8, headerEnd), to = rng.Next(8, headerEnd), n = rng.Next(1, 12);
                        for (int k = 0; k < n && from + k < headerEnd && to + k < headerEnd; k++) b[to + k] = b[from + k];
                        break;
                    }
                default: // bytes in the data section only: must always load
                    b[rng.Next(headerEnd, b.Length)] ^= 0x5A;
                    break;
            }
            File.WriteAllBytes(path, b);
            try
            {
                using var f = SafetensorsFile.Open(path);
                foreach (var t in f.Tensors)
                {
                    if (t.DType is TensorDType.F32 or TensorDType.F16 or TensorDType.BF16) f.ReadFloats(t.Name);
                    else f.GetBytes(t.Name);
                }
                ok++;
            }
            catch (ModelFormatException e)
            {
                Assert.StartsWith(path, e.Message);
                clean++;
            }
        }
        Assert.True(clean > 300, $"only {clean} mutations were rejected");
        Assert.True(ok > 100, $"only {ok} mutations loaded");
    }
}
