#!/usr/bin/env bash
# Builds session-tomcat, an OCI image tarball of Debian's Tomcat 10.1 and OpenJDK 17 JRE
# with the clustered session counter (conf/, webapp/, src/), without a container daemon
# and without downloading anything but Debian's packages:
#
#   examples/tomcat/build-image.sh OUT.tar [IMAGE]     (make tomcat-image-tar)
#
# The image holds the files of Debian's packages openjdk-17-jre-headless and
# libtomcat10-java, the shared libraries they load (from ldd), busybox-static as /bin/sh
# and friends, and the counter compiled with this machine's javac. It runs as 65532.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: build-image.sh OUT.tar [IMAGE]}
image=${2:-session-tomcat:10.1}
# OpenJDK 17 (Debian 12); JAVA_VERSION=21 for a release that no longer has 17.
java_version=${JAVA_VERSION:-17}
jre=openjdk-$java_version-jre-headless

need=()
dpkg -s "$jre" >/dev/null 2>&1 || need+=("$jre")
dpkg -s "openjdk-$java_version-jdk-headless" >/dev/null 2>&1 || need+=("openjdk-$java_version-jdk-headless")
dpkg -s libtomcat10-java >/dev/null 2>&1 || need+=(libtomcat10-java)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "build-image.sh: installing Debian packages for the Tomcat image: apt-get install ${need[*]}" >&2
  [ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root, or install them first" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The JRE's home: where the package puts bin/java.
jvm=$(dpkg -L "$jre" | grep '^/usr/lib/jvm/[^/]*/bin/java$')
jvm=${jvm%/bin/java}
javac=$jvm/bin/javac
[ -x "$javac" ] || { echo "build-image.sh: no javac in $jvm (openjdk-$java_version-jdk-headless)" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
rootfs=$stage/rootfs
mkdir -p "$rootfs"

# copy FILE: into the root file system at the same path, symlinks resolved.
copy() {
  mkdir -p "$rootfs$(dirname "$1")"
  cp -L "$1" "$rootfs$1"
}

# The JRE: every file of the package (symlinks into /etc resolved), nothing of the JDK.
while IFS= read -r f; do
  case "$f" in "$jvm"/docs|/usr/share/*|/usr/lib/debug/*) continue ;; esac
  [ -f "$f" ] || continue # directories, and links to files that are not there (e.g. cacerts)
  copy "$f"
done < <(dpkg -L "$jre" | grep "^/usr/lib/jvm/")
mkdir -p "$rootfs/usr/bin"
ln -s "$jvm/bin/java" "$rootfs/usr/bin/java"

# Tomcat: Debian's jars as CATALINA_HOME/lib (translations and build tools left out).
home=/usr/share/tomcat10
mkdir -p "$rootfs$home/lib"
for j in $(dpkg -L libtomcat10-java | grep -E '^/usr/share/java/tomcat10-.*-[0-9][0-9.]*\.jar$'); do
  case "$j" in *-i18n-*|*-catalina-ant-*) continue ;; esac
  n=$(basename "$j"); n=${n#tomcat10-}; n=${n%-[0-9]*.jar}.jar
  cp -L "$j" "$rootfs$home/lib/$n"
done

# CATALINA_BASE: the clustered server.xml and the counter, compiled here.
base=/usr/local/tomcat
mkdir -p "$rootfs$base/conf" "$rootfs$base/webapps/ROOT/WEB-INF/classes"
cp "$here"/conf/* "$rootfs$base/conf/"
cp -r "$here/webapp/." "$rootfs$base/webapps/ROOT/"
"$javac" --release 17 -nowarn -cp "$rootfs$home/lib/servlet-api.jar" \
  -d "$rootfs$base/webapps/ROOT/WEB-INF/classes" $(find "$here/src" -name '*.java')
# The server-side listener (META-INF/context.xml names it) in CATALINA_BASE/lib.
classes=$stage/server-classes
mkdir -p "$classes" "$rootfs$base/lib"
"$javac" --release 17 -nowarn -cp "$rootfs$home/lib/catalina.jar:$rootfs$home/lib/juli.jar:$rootfs$home/lib/api.jar" \
  -d "$classes" $(find "$here/src-server" -name '*.java')
(cd "$classes" && "$jvm/bin/jar" --create --file "$rootfs$base/lib/session-join.jar" .)
mkdir -p "$rootfs/usr/local/bin"
cp "$here/bin/tomcat-start" "$rootfs/usr/local/bin/tomcat-start"
chmod 0755 "$rootfs/usr/local/bin/tomcat-start"

# The shared libraries the JVM and its native libraries load.
libs=$(find "$rootfs$jvm" -type f \( -name '*.so' -o -path '*/bin/*' \) -print0 |
  xargs -0 ldd 2>/dev/null | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u)
for lib in $libs; do copy "$lib"; done

# busybox for the start script (sh, nslookup, awk, sleep) and for kubectl exec.
mkdir -p "$rootfs/bin"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || [ -e "$rootfs/bin/$applet" ] || ln -s /bin/busybox "$rootfs/bin/$applet"
done

mkdir -p "$rootfs/etc"
printf 'root:x:0:0:root:/root:/bin/sh\ntomcat:x:65532:65532:tomcat:/usr/local/tomcat:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\ntomcat:x:65532:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

tomcat_version=$(dpkg-query -W -f '${Version}' libtomcat10-java)
jre_version=$(dpkg-query -W -f '${Version}' "$jre")
mkdir -p "$(dirname "$out")"
imagetar=(go run ./hack/imagetar)
[ -x "$root/bin/tools/imagetar" ] && imagetar=("$root/bin/tools/imagetar")
cd "$root"
"${imagetar[@]}" --name "$image" --out "$out" \
  --dir "$rootfs:/" \
  --mkdir "$base/logs:0775:65532:65532" --mkdir "$base/work:0775:65532:65532" --mkdir "$base/temp:0775:65532:65532" \
  --mkdir "$base/conf/Catalina:0775:65532:65532" --mkdir "$base/conf/Catalina/localhost:0775:65532:65532" \
  --mkdir /tmp:1777 \
  --env "JAVA_HOME=$jvm" --env "CATALINA_HOME=$home" --env "CATALINA_BASE=$base" \
  --env "JAVA_OPTS=-XX:+UseSerialGC -Xms32m -Xmx192m -XX:TieredStopAtLevel=1" \
  --user 65532:65532 --workdir "$base" --entrypoint /usr/local/bin/tomcat-start \
  --expose 8080/tcp --expose 4000/tcp \
  --label "org.opencontainers.image.description=Debian tomcat10 $tomcat_version, $jre $jre_version, clustered session counter"
echo "wrote $out ($image)"
