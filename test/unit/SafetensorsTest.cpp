//===- SafetensorsTest.cpp - safetensors reader, writer, checkpoints ------===//
//
// Valid files come from the writer and are read back; malformed ones are built
// byte by byte, since the writer cannot produce them. Every rejection must name
// the file and, where there is one, the tensor.
//
//===----------------------------------------------------------------------===//

#include "lib/Weights/Safetensors.h"

#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <gtest/gtest.h>

#include <fstream>
#include <numeric>

using namespace moe;

namespace {

#define EXPECT_CONTAINS(haystack, needle)                                      \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos)             \
      << "'" << (haystack) << "' lacks '" << (needle) << "'"

std::string errorOf(llvm::Error error) {
  if (!error)
    return "<success>";
  return llvm::toString(std::move(error));
}

template <typename T> std::string errorOf(llvm::Expected<T> value) {
  if (value)
    return "<success>";
  return llvm::toString(value.takeError());
}

/// The little-endian 8-byte length that starts every file.
std::string le64(uint64_t value) {
  char bytes[8];
  llvm::support::endian::write64le(bytes, value);
  return std::string(bytes, sizeof(bytes));
}

/// A whole file: length, header text, data buffer.
std::string rawFile(llvm::StringRef header, llvm::StringRef data) {
  return le64(header.size()) + header.str() + data.str();
}

/// One header entry, e.g. `"a": {"dtype": "F32", "shape": [2], ...}`; shape
/// and offsets are JSON text so that malformed ones can be written too.
std::string entry(llvm::StringRef name, llvm::StringRef dtype,
                  llvm::StringRef shape, llvm::StringRef offsets) {
  return ("\"" + name + "\": {\"dtype\": \"" + dtype +
          "\", \"shape\": " + shape + ", \"data_offsets\": " + offsets + "}")
      .str();
}

std::vector<uint8_t> iota(size_t count, uint8_t first = 0) {
  std::vector<uint8_t> bytes(count);
  std::iota(bytes.begin(), bytes.end(), first);
  return bytes;
}

class SafetensorsTest : public ::testing::Test {
protected:
  void SetUp() override {
    llvm::SmallString<128> path;
    ASSERT_FALSE(
        llvm::sys::fs::createUniqueDirectory("moec-safetensors", path));
    dir = path.str().str();
  }
  void TearDown() override { llvm::sys::fs::remove_directories(dir); }

  std::string pathOf(llvm::StringRef name) const {
    llvm::SmallString<128> path(dir);
    llvm::sys::path::append(path, name);
    return path.str().str();
  }

  std::string writeBytes(llvm::StringRef name, llvm::StringRef bytes) const {
    std::string path = pathOf(name);
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    EXPECT_FALSE(ec) << ec.message();
    os << bytes;
    return path;
  }

  /// Writes `bytes` as a file and returns the error opening it gives, after
  /// checking that the error names the file.
  std::string openError(llvm::StringRef bytes) {
    std::string path = writeBytes("bad.safetensors", bytes);
    std::string message = errorOf(SafetensorsFile::open(path));
    EXPECT_NE(message, "<success>");
    EXPECT_CONTAINS(message, path + ": ");
    return message;
  }

  /// The names in the directory, to check that nothing was left behind.
  std::vector<std::string> listDirectory(llvm::StringRef path) const {
    std::vector<std::string> names;
    std::error_code ec;
    for (llvm::sys::fs::directory_iterator it(path, ec), end; it != end && !ec;
         it.increment(ec))
      names.push_back(llvm::sys::path::filename(it->path()).str());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::string dir;
};

//===----------------------------------------------------------------------===//
// Round trips through the writer
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, RoundTrip) {
  std::vector<uint8_t> weight = iota(2 * 3 * 2);
  std::vector<uint8_t> scalar = {0x00, 0x00, 0x80, 0x3f}; // 1.0f
  std::vector<uint8_t> bytes = iota(5, 200);
  std::vector<SafetensorsWriter::Tensor> tensors = {
      {"model.w", MOE_DTYPE_BF16, {2, 3}, weight},
      {"scale", MOE_DTYPE_F32, {}, scalar},
      {"empty", MOE_DTYPE_I64, {0, 4}, {}},
      {"bytes", MOE_DTYPE_U8, {5}, bytes},
  };
  std::string path = pathOf("model.safetensors");
  ASSERT_EQ(errorOf(SafetensorsWriter::writeFile(
                path, tensors, {{"format", "pt"}, {"note", "ünïcode"}})),
            "<success>");

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_EQ((*file)->getPath(), path);
  std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                 {"note", "ünïcode"}};
  EXPECT_EQ((*file)->getMetadata(), metadata);

  llvm::ArrayRef<TensorInfo> infos = (*file)->getTensors();
  ASSERT_EQ(infos.size(), 4u);
  // Sorted by name, whatever the declaration order.
  EXPECT_EQ(infos[0].name, "bytes");
  EXPECT_EQ(infos[1].name, "empty");
  EXPECT_EQ(infos[2].name, "model.w");
  EXPECT_EQ(infos[3].name, "scale");

  for (const SafetensorsWriter::Tensor &tensor : tensors) {
    const TensorInfo *info = (*file)->find(tensor.name);
    ASSERT_NE(info, nullptr) << tensor.name;
    EXPECT_EQ(info->dtype, tensor.dtype) << tensor.name;
    EXPECT_EQ(info->shape, tensor.shape) << tensor.name;
    EXPECT_EQ(info->byteSize, tensor.data.size()) << tensor.name;
    llvm::ArrayRef<uint8_t> data = (*file)->getData(*info);
    EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()),
              std::vector<uint8_t>(tensor.data.begin(), tensor.data.end()))
        << tensor.name;
  }
  EXPECT_EQ((*file)->find("model.w")->numElements(), 6u);
  EXPECT_EQ((*file)->find("scale")->numElements(), 1u);
  EXPECT_EQ((*file)->find("empty")->numElements(), 0u);
  EXPECT_EQ((*file)->find("missing"), nullptr);
  EXPECT_EQ((*file)->find(""), nullptr);
}

TEST_F(SafetensorsTest, WriterLayout) {
  std::vector<uint8_t> z = iota(4), a = iota(8, 10);
  std::string path = pathOf("layout.safetensors");
  ASSERT_EQ(
      errorOf(SafetensorsWriter::writeFile(
          path, {{"z", MOE_DTYPE_U8, {4}, z}, {"a", MOE_DTYPE_U16, {4}, a}})),
      "<success>");
  auto buffer = llvm::MemoryBuffer::getFile(path);
  ASSERT_TRUE(bool(buffer));
  llvm::StringRef contents = (*buffer)->getBuffer();
  ASSERT_GE(contents.size(), 8u);
  uint64_t headerSize = llvm::support::endian::read64le(contents.data());
  // The data buffer starts 8-byte aligned in the file.
  EXPECT_EQ((8 + headerSize) % 8, 0u);
  EXPECT_EQ(contents.size(), 8 + headerSize + 12);
  llvm::StringRef header = contents.substr(8, headerSize);
  // Declaration order and consecutive offsets, padded with spaces.
  EXPECT_LT(header.find("\"z\""), header.find("\"a\""));
  EXPECT_CONTAINS(header.str(), "[0,4]");
  EXPECT_CONTAINS(header.str(), "[4,12]");
  EXPECT_EQ(header.rtrim(' ').back(), '}');
  EXPECT_EQ(contents.substr(8 + headerSize),
            std::string("\x00\x01\x02\x03\x0a\x0b\x0c\x0d"
                        "\x0e\x0f\x10\x11",
                        12));
}

TEST_F(SafetensorsTest, NoTensors) {
  std::string path = pathOf("empty.safetensors");
  ASSERT_EQ(errorOf(SafetensorsWriter::writeFile(path, {})), "<success>");
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_TRUE((*file)->getTensors().empty());
  EXPECT_TRUE((*file)->getMetadata().empty());
}

TEST_F(SafetensorsTest, StreamedInPieces) {
  std::string path = pathOf("streamed.safetensors");
  std::vector<uint8_t> all = iota(4 * 4 + 3 * 2);
  {
    SafetensorsWriter writer(path);
    ASSERT_EQ(errorOf(writer.declare("first", MOE_DTYPE_F32, {4})),
              "<success>");
    ASSERT_EQ(errorOf(writer.declare("nothing", MOE_DTYPE_F16, {3, 0})),
              "<success>");
    ASSERT_EQ(errorOf(writer.declare("second", MOE_DTYPE_F16, {3})),
              "<success>");
    writer.setMetadata("k", "v");
    llvm::ArrayRef<uint8_t> bytes(all);
    // Pieces that straddle the boundary between tensors.
    ASSERT_EQ(errorOf(writer.write(bytes.take_front(5))), "<success>");
    ASSERT_EQ(errorOf(writer.write(bytes.slice(5, 13))), "<success>");
    ASSERT_EQ(errorOf(writer.write({})), "<success>");
    ASSERT_EQ(errorOf(writer.write(bytes.drop_front(18))), "<success>");
    EXPECT_FALSE(llvm::sys::fs::exists(path)); // not before finish()
    ASSERT_EQ(errorOf(writer.finish()), "<success>");
    EXPECT_NE(errorOf(writer.finish()), "<success>");
  }
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_EQ((*file)->getMetadata().at("k"), "v");
  const TensorInfo *first = (*file)->find("first");
  const TensorInfo *second = (*file)->find("second");
  const TensorInfo *nothing = (*file)->find("nothing");
  ASSERT_TRUE(first && second && nothing);
  EXPECT_EQ((*file)->getData(*first),
            llvm::ArrayRef<uint8_t>(all).take_front(16));
  EXPECT_EQ((*file)->getData(*second),
            llvm::ArrayRef<uint8_t>(all).drop_front(16));
  EXPECT_TRUE((*file)->getData(*nothing).empty());
  EXPECT_EQ(nothing->shape, (std::vector<int64_t>{3, 0}));
  // Only the final name is left in the directory.
  EXPECT_EQ(listDirectory(dir),
            std::vector<std::string>{"streamed.safetensors"});
}

TEST_F(SafetensorsTest, OverwritesAnExistingFile) {
  std::string path = writeBytes("model.safetensors", "old contents");
  std::vector<uint8_t> data = {7};
  ASSERT_EQ(errorOf(SafetensorsWriter::writeFile(
                path, {{"x", MOE_DTYPE_I8, {1}, data}})),
            "<success>");
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  EXPECT_NE((*file)->find("x"), nullptr);
}

//===----------------------------------------------------------------------===//
// Hand-made files the reader accepts
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, AcceptsUnalignedUnsortedPaddedHeaders) {
  // Entries out of offset order, an empty tensor sharing an offset, an odd
  // header length (so nothing is aligned), trailing spaces, a null
  // __metadata__ and an unknown extra field.
  std::string header = "{" + entry("b", "U16", "[2]", "[3, 7]") + ", " +
                       entry("a", "U8", "[3]", "[0, 3]") + ", " +
                       entry("e", "F64", "[0]", "[3, 3]") +
                       ", \"s\": {\"dtype\": \"I8\", \"shape\": [], "
                       "\"data_offsets\": [7, 8], \"extra\": true}, "
                       "\"__metadata__\": null}   ";
  if (header.size() % 2 == 0)
    header += " ";
  std::string path = writeBytes(
      "ok.safetensors", rawFile(header, "\x01\x02\x03\x04\x05\x06\x07\x08"));
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
  ASSERT_EQ((*file)->getTensors().size(), 4u);
  const TensorInfo *b = (*file)->find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->fileOffset, 8 + header.size() + 3);
  EXPECT_EQ((*file)->getData(*b),
            llvm::ArrayRef<uint8_t>({0x04, 0x05, 0x06, 0x07}));
  const TensorInfo *s = (*file)->find("s");
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ((*file)->getData(*s), llvm::ArrayRef<uint8_t>({0x08}));
  EXPECT_EQ((*file)->find("e")->byteSize, 0u);
}

//===----------------------------------------------------------------------===//
// Malformed files
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, TruncatedLength) {
  EXPECT_CONTAINS(openError(std::string("\x05\x00\x00\x00\x00", 5)),
                  "file is too short (5 bytes) to hold the 8-byte header "
                  "length");
  EXPECT_CONTAINS(openError(""), "file is too short (0 bytes)");
}

TEST_F(SafetensorsTest, HeaderPastTheEnd) {
  EXPECT_CONTAINS(openError(le64(123456) + std::string(92, ' ')),
                  "header length 123456 exceeds the file size 100");
  // A length so large that 8 + length would wrap.
  EXPECT_CONTAINS(openError(le64(~uint64_t(0)) + "{}"), "header length");
}

TEST_F(SafetensorsTest, HeaderOverTheLimit) {
  EXPECT_CONTAINS(openError(le64(100'000'001) + "{}"),
                  "header length 100000001 exceeds the limit of 100000000");
}

TEST_F(SafetensorsTest, HeaderNotJSON) {
  EXPECT_CONTAINS(openError(rawFile("{not json}", "")),
                  "header is not valid JSON");
  EXPECT_CONTAINS(openError(rawFile("{\"a\": ", "")),
                  "header is not valid JSON");
  EXPECT_CONTAINS(openError(rawFile("{} {}", "")), "header is not valid JSON");
  // Invalid UTF-8 in a name.
  EXPECT_CONTAINS(
      openError(rawFile("{" + entry("\xff", "U8", "[0]", "[0, 0]") + "}", "")),
      "header is not valid JSON");
  // Zero padding is not whitespace.
  EXPECT_CONTAINS(
      openError(rawFile(std::string("{}") + std::string(6, '\0'), "")),
      "header is not valid JSON");
}

TEST_F(SafetensorsTest, HeaderNotAnObject) {
  EXPECT_CONTAINS(openError(rawFile("[1, 2]", "")),
                  "header is not a JSON object");
  EXPECT_CONTAINS(openError(rawFile(" {}", "")), "header is not a JSON object");
  EXPECT_CONTAINS(openError(rawFile("", "")), "header is not a JSON object");
}

TEST_F(SafetensorsTest, EntryNotAnObject) {
  EXPECT_CONTAINS(openError(rawFile("{\"a\": [1]}", "")),
                  "tensor 'a': entry is not a JSON object");
}

TEST_F(SafetensorsTest, UnknownDType) {
  EXPECT_CONTAINS(
      openError(rawFile("{" + entry("w", "Q9", "[1]", "[0, 1]") + "}", "x")),
      "tensor 'w': unknown dtype 'Q9'");
}

TEST_F(SafetensorsTest, UnsupportedDType) {
  EXPECT_CONTAINS(
      openError(rawFile("{" + entry("w", "F4", "[2]", "[0, 1]") + "}", "x")),
      "tensor 'w': unsupported dtype 'F4'");
}

TEST_F(SafetensorsTest, DTypeNotAString) {
  EXPECT_CONTAINS(openError(rawFile("{\"w\": {\"dtype\": 4, \"shape\": [], "
                                    "\"data_offsets\": [0, 4]}}",
                                    "xxxx")),
                  "tensor 'w': dtype is not a string");
  EXPECT_CONTAINS(
      openError(rawFile("{\"w\": {\"shape\": [], \"data_offsets\": [0, 4]}}",
                        "xxxx")),
      "tensor 'w': missing \"dtype\"");
}

TEST_F(SafetensorsTest, SizeMismatch) {
  EXPECT_CONTAINS(
      openError(rawFile("{" + entry("a", "F32", "[2, 3]", "[0, 12]") + "}",
                        std::string(12, 'x'))),
      "tensor 'a': 12 bytes of data but shape [2, 3] of F32 needs "
      "24");
}

TEST_F(SafetensorsTest, OverlappingOffsets) {
  std::string header = "{" + entry("a", "F32", "[4]", "[0, 16]") + ", " +
                       entry("b", "F32", "[4]", "[8, 24]") + "}";
  EXPECT_CONTAINS(
      openError(rawFile(header, std::string(24, 'x'))),
      "tensor 'a': data_offsets [0, 16) overlap tensor 'b' [8, 24)");
  // An empty tensor inside another one overlaps it too.
  header = "{" + entry("a", "F32", "[4]", "[0, 16]") + ", " +
           entry("e", "F32", "[0]", "[8, 8]") + "}";
  EXPECT_CONTAINS(openError(rawFile(header, std::string(16, 'x'))),
                  "overlap tensor 'e' [8, 8)");
  // Two tensors with the same range.
  header = "{" + entry("a", "U8", "[4]", "[0, 4]") + ", " +
           entry("b", "U8", "[4]", "[0, 4]") + "}";
  EXPECT_CONTAINS(openError(rawFile(header, std::string(4, 'x'))),
                  "tensor 'a': data_offsets [0, 4) overlap tensor 'b'");
}

TEST_F(SafetensorsTest, Hole) {
  std::string header = "{" + entry("a", "U8", "[8]", "[0, 8]") + ", " +
                       entry("b", "U8", "[8]", "[12, 20]") + "}";
  EXPECT_CONTAINS(openError(rawFile(header, std::string(20, 'x'))),
                  "gap of 4 bytes before tensor 'b'");
  // The buffer must start at 0.
  header = "{" + entry("a", "U8", "[8]", "[2, 10]") + "}";
  EXPECT_CONTAINS(openError(rawFile(header, std::string(10, 'x'))),
                  "gap of 2 bytes before tensor 'a'");
}

TEST_F(SafetensorsTest, BufferAndFileDisagree) {
  std::string header = "{" + entry("a", "U8", "[16]", "[0, 16]") + "}";
  uint64_t dataStart = 8 + header.size();
  EXPECT_CONTAINS(openError(rawFile(header, std::string(8, 'x'))),
                  "data buffer ends at byte " + std::to_string(dataStart + 16) +
                      " but the file has " + std::to_string(dataStart + 8) +
                      " bytes");
  EXPECT_CONTAINS(openError(rawFile(header, std::string(20, 'x'))),
                  "data buffer ends at byte " + std::to_string(dataStart + 16) +
                      " but the file has " + std::to_string(dataStart + 20) +
                      " bytes");
  // No tensors, but trailing bytes.
  EXPECT_CONTAINS(openError(rawFile("{}", "x")), "data buffer ends at byte 10");
  // Offsets near 2^64: the end of the buffer cannot even be computed.
  header =
      "{" +
      entry("a", "U8", "[9223372036854775807]", "[0, 9223372036854775807]") +
      ", " +
      entry("b", "U8", "[9223372036854775807]",
            "[9223372036854775807, 18446744073709551614]") +
      "}";
  EXPECT_CONTAINS(openError(rawFile(header, "")), "does not fit in the file");
}

TEST_F(SafetensorsTest, DuplicateNames) {
  std::string header = "{" + entry("a", "U8", "[1]", "[0, 1]") + ", " +
                       entry("a", "U8", "[1]", "[1, 2]") + "}";
  EXPECT_CONTAINS(openError(rawFile(header, "xx")),
                  "duplicate tensor name 'a'");
  // Within an entry: which dtype would be meant?
  header = "{\"a\": {\"dtype\": \"U8\", \"dtype\": \"I8\", \"shape\": [1], "
           "\"data_offsets\": [0, 1]}}";
  EXPECT_CONTAINS(openError(rawFile(header, "x")),
                  "tensor 'a': duplicate key 'dtype'");
  header = "{\"__metadata__\": {\"k\": \"1\", \"k\": \"2\"}}";
  EXPECT_CONTAINS(openError(rawFile(header, "")),
                  "__metadata__: duplicate key 'k'");
}

TEST_F(SafetensorsTest, NegativeDimension) {
  EXPECT_CONTAINS(openError(rawFile(
                      "{" + entry("a", "F32", "[2, -1]", "[0, 0]") + "}", "")),
                  "tensor 'a': shape[1] is negative (-1)");
}

TEST_F(SafetensorsTest, NonIntegerShape) {
  for (llvm::StringRef shape :
       {"[2.5]", "[\"2\"]", "[null]", "[[2]]", "[1e2]", "{}", "3"}) {
    std::string message =
        openError(rawFile("{" + entry("a", "U8", shape, "[0, 0]") + "}", ""));
    EXPECT_CONTAINS(message, "tensor 'a': shape");
    EXPECT_CONTAINS(message, "not");
  }
  // Larger than int64.
  EXPECT_CONTAINS(
      openError(rawFile(
          "{" + entry("a", "U8", "[9223372036854775808, 0]", "[0, 0]") + "}",
          "")),
      "tensor 'a': shape[0] (9223372036854775808) does not fit");
  // Larger than uint64 (nlohmann makes it a float).
  EXPECT_CONTAINS(
      openError(rawFile(
          "{" + entry("a", "U8", "[18446744073709551616]", "[0, 0]") + "}",
          "")),
      "tensor 'a': shape[0] is not a non-negative integer");
}

TEST_F(SafetensorsTest, BadOffsets) {
  for (llvm::StringRef offsets :
       {"[0]", "[0, 1, 2]", "[-1, 1]", "[0, 1.0]", "\"0, 1\"", "[0, null]"}) {
    EXPECT_CONTAINS(
        openError(rawFile("{" + entry("a", "U8", "[1]", offsets) + "}", "x")),
        "tensor 'a': data_offsets is not an array of two unsigned integers");
  }
}

TEST_F(SafetensorsTest, BeginAfterEnd) {
  EXPECT_CONTAINS(
      openError(rawFile("{" + entry("a", "U8", "[8]", "[16, 8]") + "}",
                        std::string(16, 'x'))),
      "tensor 'a': data_offsets [16, 8): begin is after end");
}

TEST_F(SafetensorsTest, ByteSizeOverflow) {
  EXPECT_CONTAINS(
      openError(rawFile(
          "{" + entry("huge", "F32", "[4611686018427387904, 8]", "[0, 0]") +
              "}",
          "")),
      "tensor 'huge': the byte size of shape [4611686018427387904, 8] of F32 "
      "overflows 64 bits");
}

TEST_F(SafetensorsTest, BadMetadata) {
  EXPECT_CONTAINS(openError(rawFile("{\"__metadata__\": [1]}", "")),
                  "__metadata__ is not a JSON object");
  EXPECT_CONTAINS(openError(rawFile("{\"__metadata__\": {\"k\": 1}}", "")),
                  "__metadata__ entry 'k' is not a string");
}

TEST_F(SafetensorsTest, NotARegularFile) {
  std::string message = errorOf(SafetensorsFile::open(dir));
  EXPECT_CONTAINS(message, dir + ": not a regular file");
  std::string missing = pathOf("missing.safetensors");
  message = errorOf(SafetensorsFile::open(missing));
  EXPECT_CONTAINS(message, missing + ": cannot open");
}

// Every prefix and many single-byte corruptions of a valid file must be
// handled without crashing or reading out of bounds (run under a sanitizer to
// check the latter).
TEST_F(SafetensorsTest, CorruptionsNeverCrash) {
  std::vector<uint8_t> a = iota(12), b = iota(3);
  std::string goodPath = pathOf("good.safetensors");
  ASSERT_EQ(errorOf(SafetensorsWriter::writeFile(
                goodPath,
                {{"a", MOE_DTYPE_F32, {3}, a}, {"b", MOE_DTYPE_U8, {3, 1}, b}},
                {{"k", "v"}})),
            "<success>");
  auto buffer = llvm::MemoryBuffer::getFile(goodPath);
  ASSERT_TRUE(bool(buffer));
  std::string good = (*buffer)->getBuffer().str();
  std::string path = pathOf("mutant.safetensors");
  auto tryOpen = [&](const std::string &bytes) {
    writeBytes("mutant.safetensors", bytes);
    auto file = SafetensorsFile::open(path);
    if (!file) {
      llvm::consumeError(file.takeError());
      return;
    }
    // Whatever was accepted must lie inside the file.
    for (const TensorInfo &tensor : (*file)->getTensors()) {
      EXPECT_LE(tensor.fileOffset + tensor.byteSize, bytes.size());
      llvm::ArrayRef<uint8_t> data = (*file)->getData(tensor);
      EXPECT_EQ(data.size(), tensor.byteSize);
    }
  };
  for (size_t length = 0; length < good.size(); ++length)
    tryOpen(good.substr(0, length));
  for (size_t i = 0; i < good.size(); ++i) {
    for (char replacement : {'\0', '\xff', '0', '9', '"', '-', '[', '}'}) {
      std::string mutant = good;
      mutant[i] = replacement;
      tryOpen(mutant);
    }
  }
}

//===----------------------------------------------------------------------===//
// Checkpoints
//===----------------------------------------------------------------------===//

class CheckpointTest : public SafetensorsTest {
protected:
  /// Writes a shard holding one U8 tensor of `size` bytes per name.
  void writeShard(llvm::StringRef name, std::vector<std::string> tensors,
                  size_t size = 2) {
    std::vector<std::vector<uint8_t>> data;
    std::vector<SafetensorsWriter::Tensor> list;
    data.reserve(tensors.size());
    for (const std::string &tensor : tensors) {
      data.push_back(std::vector<uint8_t>(size, uint8_t(tensor.size())));
      list.push_back({tensor, MOE_DTYPE_U8, {int64_t(size)}, data.back()});
    }
    ASSERT_EQ(errorOf(SafetensorsWriter::writeFile(pathOf(name), list)),
              "<success>");
  }

  std::string writeIndex(llvm::StringRef weightMap) {
    return writeBytes("model.safetensors.index.json",
                      ("{\"metadata\": {\"total_size\": 8}, \"weight_map\": {" +
                       weightMap + "}}")
                          .str());
  }
};

TEST_F(CheckpointTest, SingleFile) {
  writeShard("model.safetensors", {"a", "bb"});
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  EXPECT_EQ((*checkpoint)->getDirectory(), dir);
  EXPECT_EQ((*checkpoint)->getTensorNames(),
            (std::vector<std::string>{"a", "bb"}));
  auto entry = (*checkpoint)->get("bb");
  ASSERT_TRUE(bool(entry)) << llvm::toString(entry.takeError());
  EXPECT_EQ(entry->tensor->name, "bb");
  EXPECT_EQ(entry->file->getPath(), pathOf("model.safetensors"));
  EXPECT_EQ(entry->file->getData(*entry->tensor),
            llvm::ArrayRef<uint8_t>({2, 2}));
  EXPECT_FALSE((*checkpoint)->find("c").has_value());
}

TEST_F(CheckpointTest, MissingTensor) {
  writeShard("model.safetensors", {"a"});
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  EXPECT_CONTAINS(errorOf((*checkpoint)->get("nope")),
                  dir + ": no tensor named 'nope' in the checkpoint");
}

TEST_F(CheckpointTest, Sharded) {
  writeShard("model-00001-of-00002.safetensors", {"a", "b"});
  writeShard("model-00002-of-00002.safetensors", {"ccc"}, 4);
  writeIndex("\"a\": \"model-00001-of-00002.safetensors\", "
             "\"b\": \"model-00001-of-00002.safetensors\", "
             "\"ccc\": \"model-00002-of-00002.safetensors\"");
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  EXPECT_EQ((*checkpoint)->getTensorNames(),
            (std::vector<std::string>{"a", "b", "ccc"}));
  auto a = (*checkpoint)->find("a");
  auto ccc = (*checkpoint)->find("ccc");
  ASSERT_TRUE(a && ccc);
  EXPECT_EQ(a->file->getPath(), pathOf("model-00001-of-00002.safetensors"));
  EXPECT_EQ(ccc->file->getPath(), pathOf("model-00002-of-00002.safetensors"));
  EXPECT_EQ(ccc->file->getData(*ccc->tensor),
            llvm::ArrayRef<uint8_t>({3, 3, 3, 3}));
}

TEST_F(CheckpointTest, IndexWinsOverSingleFile) {
  writeShard("model.safetensors", {"stale"});
  writeShard("shard.safetensors", {"fresh"});
  writeIndex("\"fresh\": \"shard.safetensors\"");
  auto checkpoint = Checkpoint::open(dir);
  ASSERT_TRUE(bool(checkpoint)) << llvm::toString(checkpoint.takeError());
  EXPECT_EQ((*checkpoint)->getTensorNames(), std::vector<std::string>{"fresh"});
}

TEST_F(CheckpointTest, MissingShard) {
  writeShard("model-00001-of-00002.safetensors", {"a"});
  std::string index = writeIndex("\"a\": \"model-00001-of-00002.safetensors\", "
                                 "\"b\": \"model-00002-of-00002.safetensors\"");
  std::string message = errorOf(Checkpoint::open(dir));
  EXPECT_CONTAINS(message, index);
  EXPECT_CONTAINS(message, "model-00002-of-00002.safetensors");
  EXPECT_CONTAINS(message, "does not exist");
}

TEST_F(CheckpointTest, ShardEscapingTheDirectory) {
  // The escape target exists, so only the name check can stop it.
  std::string inner = pathOf("checkpoint");
  ASSERT_FALSE(llvm::sys::fs::create_directory(inner));
  writeShard("outside.safetensors", {"a"});
  for (llvm::StringRef shard :
       {"../outside.safetensors", "/etc/passwd", "..", "", "sub/x"}) {
    std::string index = inner + "/model.safetensors.index.json";
    std::error_code ec;
    {
      llvm::raw_fd_ostream os(index, ec);
      ASSERT_FALSE(ec);
      os << "{\"weight_map\": {\"a\": \"" << shard << "\"}}";
    }
    std::string message = errorOf(Checkpoint::open(inner));
    EXPECT_CONTAINS(message, index);
    EXPECT_CONTAINS(message, "shard name '" + shard.str() + "'");
  }
}

TEST_F(CheckpointTest, TensorMissingFromItsShard) {
  writeShard("model-00001-of-00002.safetensors", {"a"});
  writeShard("model-00002-of-00002.safetensors", {"b"});
  std::string index = writeIndex("\"a\": \"model-00001-of-00002.safetensors\", "
                                 "\"b\": \"model-00001-of-00002.safetensors\"");
  std::string message = errorOf(Checkpoint::open(dir));
  EXPECT_CONTAINS(message, index);
  EXPECT_CONTAINS(message, "tensor 'b' is mapped to shard "
                           "'model-00001-of-00002.safetensors', which does "
                           "not contain it");
}

TEST_F(CheckpointTest, InvalidShard) {
  std::string shard = writeBytes("model-00001-of-00001.safetensors", "junk");
  writeIndex("\"a\": \"model-00001-of-00001.safetensors\"");
  EXPECT_CONTAINS(errorOf(Checkpoint::open(dir)),
                  shard + ": file is too short");
}

TEST_F(CheckpointTest, BadIndex) {
  std::string index = writeBytes("model.safetensors.index.json", "{oops");
  std::string message = errorOf(Checkpoint::open(dir));
  EXPECT_CONTAINS(message, index + ": not valid JSON");

  writeBytes("model.safetensors.index.json", "{\"metadata\": {}}");
  EXPECT_CONTAINS(errorOf(Checkpoint::open(dir)),
                  index + ": no \"weight_map\" object");

  writeBytes("model.safetensors.index.json", "{\"weight_map\": {\"a\": 1}}");
  EXPECT_CONTAINS(errorOf(Checkpoint::open(dir)),
                  "weight_map entry for tensor 'a' is not a string");

  writeBytes("model.safetensors.index.json",
             "{\"weight_map\": {\"a\": \"x\", \"a\": \"y\"}}");
  EXPECT_CONTAINS(errorOf(Checkpoint::open(dir)), "duplicate key 'a'");
}

TEST_F(CheckpointTest, EmptyDirectory) {
  EXPECT_CONTAINS(errorOf(Checkpoint::open(dir)),
                  dir +
                      ": no model.safetensors or model.safetensors.index.json");
  std::string missing = pathOf("missing");
  EXPECT_CONTAINS(errorOf(Checkpoint::open(missing)),
                  missing + ": not a directory");
}

//===----------------------------------------------------------------------===//
// Writer misuse
//===----------------------------------------------------------------------===//

TEST_F(SafetensorsTest, WriterDeclareAfterWrite) {
  SafetensorsWriter writer(pathOf("w.safetensors"));
  ASSERT_EQ(errorOf(writer.declare("a", MOE_DTYPE_U8, {2})), "<success>");
  ASSERT_EQ(errorOf(writer.write(iota(1))), "<success>");
  std::string message = errorOf(writer.declare("b", MOE_DTYPE_U8, {2}));
  EXPECT_CONTAINS(message, pathOf("w.safetensors") + ": tensor 'b': declared "
                                                     "after data was written");
}

TEST_F(SafetensorsTest, WriterTooManyBytes) {
  std::string path = pathOf("w.safetensors");
  SafetensorsWriter writer(path);
  ASSERT_EQ(errorOf(writer.declare("a", MOE_DTYPE_U16, {2})), "<success>");
  ASSERT_EQ(errorOf(writer.write(iota(3))), "<success>");
  std::string message = errorOf(writer.write(iota(2)));
  EXPECT_CONTAINS(message, path + ": tensor 'a': write of 2 bytes exceeds the "
                                  "1 bytes left");
  // Nothing of the rejected write went out: the file can still be completed.
  ASSERT_EQ(errorOf(writer.write(iota(1))), "<success>");
  ASSERT_EQ(errorOf(writer.finish()), "<success>");
  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(bool(file)) << llvm::toString(file.takeError());
}

TEST_F(SafetensorsTest, WriterFinishWithMissingBytes) {
  std::string path = pathOf("w.safetensors");
  {
    SafetensorsWriter writer(path);
    ASSERT_EQ(errorOf(writer.declare("a", MOE_DTYPE_U8, {2})), "<success>");
    ASSERT_EQ(errorOf(writer.declare("b", MOE_DTYPE_U8, {4})), "<success>");
    ASSERT_EQ(errorOf(writer.write(iota(3))), "<success>");
    EXPECT_CONTAINS(errorOf(writer.finish()),
                    path + ": tensor 'b': only 1 of 4 bytes were written");
    EXPECT_FALSE(llvm::sys::fs::exists(path));
    // The temporary file is gone already, not only when the writer dies.
    EXPECT_TRUE(listDirectory(dir).empty());
    EXPECT_NE(errorOf(writer.write(iota(3))), "<success>");
    EXPECT_NE(errorOf(writer.finish()), "<success>");
  }
  EXPECT_TRUE(listDirectory(dir).empty());

  // Nothing written at all.
  SafetensorsWriter writer(path);
  ASSERT_EQ(errorOf(writer.declare("a", MOE_DTYPE_U8, {2})), "<success>");
  EXPECT_CONTAINS(errorOf(writer.finish()),
                  "tensor 'a': only 0 of 2 bytes were written");
  EXPECT_TRUE(listDirectory(dir).empty());
}

TEST_F(SafetensorsTest, WriterDuplicateDeclare) {
  SafetensorsWriter writer(pathOf("w.safetensors"));
  ASSERT_EQ(errorOf(writer.declare("a", MOE_DTYPE_U8, {2})), "<success>");
  EXPECT_CONTAINS(errorOf(writer.declare("a", MOE_DTYPE_F32, {1})),
                  "tensor 'a': declared twice");
}

TEST_F(SafetensorsTest, WriterRejectsBadDeclarations) {
  SafetensorsWriter writer(pathOf("w.safetensors"));
  EXPECT_CONTAINS(errorOf(writer.declare("n", MOE_DTYPE_F32, {2, -3})),
                  "tensor 'n': negative dimension in shape [2, -3]");
  EXPECT_CONTAINS(errorOf(writer.declare("i", MOE_DTYPE_INVALID, {2})),
                  "tensor 'i': invalid dtype");
  EXPECT_CONTAINS(
      errorOf(writer.declare("o", MOE_DTYPE_F64, {int64_t(1) << 62, 4})),
      "tensor 'o': the byte size of shape");
  EXPECT_CONTAINS(errorOf(writer.declare("__metadata__", MOE_DTYPE_U8, {1})),
                  "reserved");
  EXPECT_CONTAINS(errorOf(writer.declare("\xff", MOE_DTYPE_U8, {1})),
                  "not valid UTF-8");
  // The total over all tensors must not overflow either.
  ASSERT_EQ(
      errorOf(writer.declare("big1", MOE_DTYPE_U8, {int64_t(1) << 62, 3})),
      "<success>");
  EXPECT_CONTAINS(
      errorOf(writer.declare("big2", MOE_DTYPE_U8, {int64_t(1) << 62, 2})),
      "tensor 'big2'");
}

TEST_F(SafetensorsTest, WriterDestroyedUnfinished) {
  {
    SafetensorsWriter writer(pathOf("w.safetensors"));
    ASSERT_EQ(errorOf(writer.declare("a", MOE_DTYPE_U8, {4})), "<success>");
    ASSERT_EQ(errorOf(writer.write(iota(2))), "<success>");
    EXPECT_EQ(listDirectory(dir).size(), 1u); // the temporary file
  }
  EXPECT_TRUE(listDirectory(dir).empty());
}

TEST_F(SafetensorsTest, WriterMetadataAfterData) {
  std::string path = pathOf("w.safetensors");
  SafetensorsWriter writer(path);
  ASSERT_EQ(errorOf(writer.declare("a", MOE_DTYPE_U8, {1})), "<success>");
  ASSERT_EQ(errorOf(writer.write(iota(1))), "<success>");
  writer.setMetadata("late", "x");
  EXPECT_CONTAINS(errorOf(writer.finish()),
                  "metadata 'late' was set after data was written");
  EXPECT_FALSE(llvm::sys::fs::exists(path));
}

TEST_F(SafetensorsTest, WriteFileSizeMismatch) {
  std::string path = pathOf("w.safetensors");
  std::vector<uint8_t> data = iota(3);
  EXPECT_CONTAINS(errorOf(SafetensorsWriter::writeFile(
                      path, {{"a", MOE_DTYPE_F32, {1}, data}})),
                  path + ": tensor 'a': 3 bytes of data but shape [1] of F32 "
                         "needs 4");
  EXPECT_TRUE(listDirectory(dir).empty());
}

TEST_F(SafetensorsTest, WriterIntoMissingDirectory) {
  std::string path = pathOf("missing/w.safetensors");
  EXPECT_CONTAINS(errorOf(SafetensorsWriter::writeFile(path, {})),
                  path + ": cannot create a temporary file");
}

} // namespace
