// Output files that appear whole or not at all: a save that fails midway (disk full, a read
// error, a signal) leaves the file that was there untouched.
//
// A regular file (or a name that does not exist yet) is written to a temporary file in the same
// directory, `.<name>.vfio-mig-<pid>.tmp`, created with O_EXCL and mode 0666 & ~umask (an
// existing target's permission bits are kept); commit() fsyncs it, renames it over the target
// and fsyncs the directory, unless the cancel fd became readable before the rename. Without
// commit() the temporary file is removed. A process killed by SIGKILL may leave one behind,
// recognisable by that name. "-" (stdout) and targets that are not regular files (a FIFO,
// /dev/null, a character device) are written directly: not atomic ("-" through a duplicate
// of fd 1).
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace vfio {

class AtomicFile {
 public:
  // Once `cancel_fd` is readable, waiting for a FIFO's reader ends with ECANCELED, and so does
  // a commit that has not renamed yet (the fsync of a large file can take seconds).
  static Result<AtomicFile> create(const std::string& path, int cancel_fd = -1);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  ~AtomicFile();  // discards what was not committed

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }  // the target
  // Empty when written directly.
  const std::string& temp_path() const { return temp_; }

  // Makes the written bytes the target's content (fsync, rename, directory fsync), or for a
  // direct target checks that they reached it (close). Every error is returned.
  Result<> commit();
  // Removes the temporary file; a direct target keeps what was written. Idempotent.
  void discard();

 private:
  AtomicFile(int fd, std::string path, std::string temp, int cancel_fd);
  int fd_, cancel_fd_;
  std::string path_, temp_;
};

// Writes `content` to `path` through an AtomicFile.
Result<> write_file_atomically(const std::string& path, std::string_view content);

}  // namespace vfio
