// Read-only memory map of a whole file. Tensors viewing it hold a shared_ptr to it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace celer {

class MappedFile {
 public:
  // Throws IOError (missing, unreadable, a directory) naming the path.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Writes `bytes` to `path` atomically: a temporary file in the same folder, then rename, so a
// crash never leaves a truncated file under the final name. Throws IOError.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();  // removes the temporary file when commit() was not reached
  void write(const void* data, size_t n);
  void write(const std::string& s) { write(s.data(), s.size()); }
  void commit();

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
};

}  // namespace celer
