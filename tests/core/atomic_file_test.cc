// AtomicFile: the old file survives anything but a commit; non-regular targets are written
// directly.
#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/channel.h"

namespace vfio {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vfio-mig-atomic-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) { return (dir_ / name).string(); }
  static std::string read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static void write(const std::string& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
  }
  std::size_t entries() {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir_), {}));
  }
  static void put(const AtomicFile& f, const std::string& text) {
    ASSERT_EQ(::write(f.fd(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  fs::path dir_;
};

TEST_F(AtomicFileTest, CommitReplacesTheFileAndKeepsItsMode) {
  write(path("out"), "old");
  ::chmod(path("out").c_str(), 0640);
  auto f = AtomicFile::create(path("out"));
  ASSERT_TRUE(f) << f.error().describe();
  EXPECT_EQ(f->temp_path(), path(".out.vfio-mig-" + std::to_string(::getpid()) + ".tmp"));
  put(*f, "new content");
  EXPECT_EQ(read(path("out")), "old");  // nothing visible before the commit
  ASSERT_TRUE(f->commit());
  EXPECT_EQ(read(path("out")), "new content");
  struct stat st;
  ASSERT_EQ(::stat(path("out").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, WithoutCommitTheOldFileIsUntouchedAndNoTempRemains) {
  write(path("out"), "old");
  {
    auto f = AtomicFile::create(path("out"));
    ASSERT_TRUE(f);
    put(*f, "partial stream");
    EXPECT_TRUE(fs::exists(f->temp_path()));
  }  // a failed save: destroyed uncommitted
  EXPECT_EQ(read(path("out")), "old");
  EXPECT_EQ(entries(), 1u);
  auto g = AtomicFile::create(path("out"));
  ASSERT_TRUE(g);
  g->discard();
  EXPECT_FALSE(g->commit());
  EXPECT_EQ(read(path("out")), "old");
}

TEST_F(AtomicFileTest, NewFileGetsTheUmaskMode) {
  const mode_t old = ::umask(027);
  auto f = AtomicFile::create(path("fresh"));
  ::umask(old);
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->commit());
  struct stat st;
  ASSERT_EQ(::stat(path("fresh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST_F(AtomicFileTest, ATempFileOfADeadProcessWithOurPidIsReplaced) {
  write(path(".out.vfio-mig-" + std::to_string(::getpid()) + ".tmp"), "stale");
  auto f = AtomicFile::create(path("out"));
  ASSERT_TRUE(f) << f.error().describe();
  put(*f, "x");
  ASSERT_TRUE(f->commit());
  EXPECT_EQ(read(path("out")), "x");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, ASymlinkStaysALink) {
  write(path("real"), "old");
  fs::create_symlink(path("real"), path("link"));
  ASSERT_TRUE(write_file_atomically(path("link"), "new"));
  EXPECT_TRUE(fs::is_symlink(path("link")));
  EXPECT_EQ(read(path("real")), "new");
}

TEST_F(AtomicFileTest, NonRegularTargetsAreWrittenDirectly) {
  auto null = AtomicFile::create("/dev/null");
  ASSERT_TRUE(null);
  EXPECT_TRUE(null->temp_path().empty());
  EXPECT_TRUE(null->commit());
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  std::thread reader([p = path("fifo")] {
    std::ifstream in(p);
    std::string s;
    std::getline(in, s);
    EXPECT_EQ(s, "through the fifo");
  });
  auto fifo = AtomicFile::create(path("fifo"));  // waits for the reader, then writes directly
  ASSERT_TRUE(fifo);
  EXPECT_TRUE(fifo->temp_path().empty());
  put(*fifo, "through the fifo\n");
  EXPECT_TRUE(fifo->commit());
  reader.join();
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, WaitingForAFifoReaderIsCancellable) {
  ASSERT_EQ(::mkfifo(path("fifo").c_str(), 0600), 0);
  int cancel[2];
  ASSERT_EQ(::pipe(cancel), 0);
  ASSERT_EQ(::write(cancel[1], "!", 1), 1);
  auto f = AtomicFile::create(path("fifo"), cancel[0]);  // no reader ever comes
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, ECANCELED);
  ::close(cancel[0]);
  ::close(cancel[1]);
}

TEST_F(AtomicFileTest, ACancelBeforeTheRenameKeepsTheOldFile) {
  write(path("out"), "old");
  int cancel[2];
  ASSERT_EQ(::pipe(cancel), 0);
  auto f = AtomicFile::create(path("out"), cancel[0]);
  ASSERT_TRUE(f);
  put(*f, "new content");
  ASSERT_EQ(::write(cancel[1], "!", 1), 1);  // the signal arrives while the save finishes
  auto r = f->commit();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED);
  EXPECT_EQ(read(path("out")), "old");
  EXPECT_EQ(entries(), 1u);  // no temporary file either
  ::close(cancel[0]);
  ::close(cancel[1]);
}

}  // namespace
}  // namespace vfio
