#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/rng.h"

namespace celer {

namespace {
[[noreturn]] void fail(const std::string& what, const std::string& path, int err) {
  throw IOError(what + " '" + path + "': " + std::strerror(err));
}

// Closes a descriptor on scope exit (open() paths that throw).
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
};

std::string parent_dir(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// A name no other writer (process or thread) picks: pid plus a per-call random suffix.
std::string temp_name(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  uint64_t now = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  SplitMix64 rng(now ^ (counter.fetch_add(1) << 48) ^ uint64_t(::getpid()));
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%016llx", static_cast<unsigned long long>(rng.next()));
  return path + ".tmp." + std::to_string(::getpid()) + "." + suffix;
}
}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  // O_NONBLOCK: opening a FIFO (or a device) for reading would otherwise wait for a writer
  // before the regular-file check below could refuse it. Regular files ignore the flag.
  FdGuard fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
  if (fd.fd < 0) fail("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd.fd, &st) != 0) fail("cannot stat", path, errno);
  if (S_ISDIR(st.st_mode)) throw IOError("cannot read '" + path + "': it is a directory");
  if (!S_ISREG(st.st_mode)) throw IOError("cannot read '" + path + "': not a regular file");

  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = size_t(st.st_size);
  if (file->size_ == 0) return file;  // mmap of length 0 is an error; nothing to map
  // Copy-on-write pages: a stray write into a tensor view changes private memory, never
  // the file, and does not crash. Where the system will not reserve that (strict
  // overcommit), fall back to read-only pages.
  void* p = ::mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.fd, 0);
  if (p == MAP_FAILED && errno == ENOMEM) p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd.fd, 0);
  if (p == MAP_FAILED) fail("cannot memory-map", path, errno);
  // Map every page now, in one call (Linux >= 5.14), without copying: a first forward pass
  // would otherwise take one page fault per 4 KiB (a million for a 1B fp32 model). Pages not
  // in the page cache are read here. Advice only: an older kernel says EINVAL, nothing changes.
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
  ::madvise(p, file->size_, MADV_POPULATE_READ);
  file->data_ = static_cast<const uint8_t*>(p);
  return file;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
    tmp_path_ = temp_name(path);
    fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ < 0 && errno != EEXIST) fail("cannot create a temporary file for", path, errno);
  }
  if (fd_ < 0) fail("cannot create a temporary file for", path, EEXIST);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_path_.empty()) ::unlink(tmp_path_.c_str());  // not committed: leave nothing behind
}

void AtomicFileWriter::write(const void* data, size_t n) {
  if (fd_ < 0) throw IOError("write to '" + path_ + "' after commit");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    // Linux writes at most ~2 GiB per call; larger requests come back short, as may any.
    ssize_t w = ::write(fd_, p, n < (size_t(1) << 30) ? n : (size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("cannot write", path_, errno);
    }
    p += w;
    n -= size_t(w);
  }
}

void AtomicFileWriter::commit() {
  if (fd_ < 0) throw IOError("commit of '" + path_ + "' twice");
  if (::fsync(fd_) != 0) fail("cannot flush", path_, errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("cannot close", path_, errno);
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file to", path_, errno);
  tmp_path_.clear();
  // Make the rename itself durable; failure here loses nothing already visible, so ignore it.
  int dir = ::open(parent_dir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

}  // namespace celer
