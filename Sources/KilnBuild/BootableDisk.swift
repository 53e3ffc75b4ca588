import Foundation
import KilnCore
import KilnProviders

/// How a debootstrap base's disk is laid out and made bootable (docs/images.md).
///
/// A GPT disk: a BIOS boot partition (GRUB's core image for legacy BIOS), an EFI system
/// partition (GRUB for UEFI at the removable-media path), and the root filesystem, each with
/// its Discoverable Partitions type UUID. The host writes the partition table and the root
/// filesystem from mmdebstrap's tree (`sfdisk`, `mkfs.ext4 -d` at an offset: no loop device,
/// no mount, works unprivileged); the disk's first boot, a one-shot boot of its own kernel with
/// a kiln script as init, formats the ESP and runs Debian's `grub-install` for both firmware
/// kinds, where the disk is a block device as on any machine. Hand-writing GRUB's boot sector
/// and core image onto a file was the alternative; grub-install is what Debian maintains.
enum BootableDisk {
    /// GPT partition type UUIDs (UEFI spec; the Discoverable Partitions Specification for root).
    static let biosBootType = "21686148-6449-6E6F-744E-656564454649"
    static let espType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    static let rootX86_64Type = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"

    /// Partitions, in 512-byte sectors: BIOS boot 1 MiB at 1 MiB, ESP 64 MiB at 2 MiB, root
    /// from 66 MiB to 1 MiB before the end (where the backup GPT lives).
    static let biosBootStart = 2048
    static let espStart = 4096
    static let espSectors = 131_072
    static let rootStart = 135_168

    /// The root partition's number: the build boot and the one-shot boot name it.
    static let rootDevice = "/dev/vda3"

    /// Packages a bootable base needs beyond a kernel: grub-install and update-grub, both GRUB
    /// platforms (the binaries only, so no package postinst tries to install a boot loader
    /// inside mmdebstrap's chroot), and the ESP's mkfs/fsck.
    static let packages = ["grub2-common", "grub-pc-bin", "grub-efi-amd64-bin", "dosfstools"]

    /// What `cloud_init: true` adds: cloud-init, and sudo for the default user it creates.
    static let cloudInitPackages = ["cloud-init", "sudo"]

    /// Where the one-shot script lives in the tree; it removes itself.
    static let installerPath = "/usr/lib/kiln/install-boot-loaders"
    static let doneMarker = "kiln-boot-loaders: done"

    /// Runs inside the guest as PID 1. Kiln's text only; the ESP's volume id is substituted
    /// by the hook (8 hex digits it made itself).
    static let installer = #"""
        #!/bin/sh
        # kiln: the source disk's one boot. Installs GRUB for legacy BIOS and UEFI, then powers off.
        export PATH=/usr/sbin:/usr/bin:/sbin:/bin
        finish() {
          status=$?
          if [ "$status" -eq 0 ]; then echo "kiln-boot-loaders: done"; else echo "kiln-boot-loaders: failed with status $status"; fi
          # The root stays mounted (this script runs from it): synced, then remounted
          # read-only by SysRq as kiln's build shutdown does, so its journal is clean.
          \#(QemuProvider.remountReadOnly)
          echo o > /proc/sysrq-trigger
          sleep 60
        }
        trap finish EXIT
        set -eux
        mountpoint -q /proc || mount -t proc proc /proc
        mountpoint -q /sys || mount -t sysfs sysfs /sys
        mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
        mount -o remount,rw /
        mkfs.vfat -F 32 -n ESP -i @ESP_ID@ /dev/vda2
        mkdir -p /boot/efi
        mount -t vfat /dev/vda2 /boot/efi
        grub-install --target=i386-pc /dev/vda
        # --removable: EFI/BOOT/BOOTX64.EFI, which firmware starts without a boot entry (a new
        # VM's NVRAM has none); --no-nvram: nothing to write into this VM's NVRAM.
        grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram --no-uefi-secure-boot
        umount /boot/efi
        rm -rf /usr/lib/kiln
        """#

    /// The part of mmdebstrap's customize hook that writes the image's boot configuration into
    /// the tree ($root): fstab, GRUB's configuration, the network, root growth.
    static let configureTree = #"""
        root_uuid=$(cat /proc/sys/kernel/random/uuid)
        esp_id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
        esp_uuid="$(echo "$esp_id" | cut -c1-4)-$(echo "$esp_id" | cut -c5-8)"
        cat > "$root/etc/network/interfaces" <<'EOF'
        auto lo
        iface lo inet loopback

        # The first Ethernet interface whatever its name (eth0, ens3, enp0s3...) gets DHCP.
        auto /e*/1=eth
        iface eth inet dhcp
        EOF
        cat > "$root/etc/fstab" <<EOF
        UUID=$root_uuid / ext4 defaults,errors=remount-ro,x-systemd.growfs 0 1
        UUID=$esp_uuid /boot/efi vfat umask=0077,noauto,nofail,x-systemd.automount 0 2
        EOF
        mkdir -p "$root/boot/efi" "$root/boot/grub" "$root/etc/repart.d" "$root/etc/default"
        # systemd-repart grows the root partition to the disk it is given, then
        # x-systemd.growfs grows the filesystem (docs/images.md, first boot).
        printf '[Partition]\nType=root\n' > "$root/etc/repart.d/50-kiln-root.conf"
        cat > "$root/boot/grub/grub.cfg" <<EOF
        # Written by kiln (docs/images.md). It boots what /vmlinuz and /initrd.img point at:
        # Debian moves both links when it installs a kernel, so no update-grub is needed.
        serial --unit=0 --speed=115200
        terminal_input console serial
        terminal_output console serial
        set timeout_style=hidden
        set timeout=0
        search --no-floppy --fs-uuid --set=root $root_uuid
        menuentry 'Debian GNU/Linux' {
          linux /vmlinuz root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200
          initrd /initrd.img
        }
        EOF
        if [ "$KILN_CLOUD_INIT" = yes ]; then
          mkdir -p "$root/etc/cloud/cloud.cfg.d"
          cat > "$root/etc/cloud/cloud.cfg.d/90-kiln.cfg" <<'EOF'
        # kiln (docs/images.md): the datasources a kiln image is started from; None last, so an
        # instance with no datasource still boots. The network stays kiln's (DHCP on the first
        # Ethernet interface) and the root is grown by systemd-repart.
        datasource_list: [NoCloud, ConfigDrive, GCE, Ec2, None]
        network: {config: disabled}
        growpart: {mode: "off"}
        resize_rootfs: false
        # A minbase image has no locales package: C.UTF-8 is built in, and cloud-init's locale
        # module would fail generating en_US.UTF-8.
        locale: false
        EOF
        fi
        # The same boot contract if update-grub runs later (grub2-common's kernel hook does).
        cat > "$root/etc/default/grub" <<'EOF'
        GRUB_DEFAULT=0
        GRUB_TIMEOUT=0
        GRUB_TIMEOUT_STYLE=hidden
        GRUB_DISTRIBUTOR=Debian
        GRUB_CMDLINE_LINUX_DEFAULT=""
        GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200"
        GRUB_TERMINAL="console serial"
        GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
        GRUB_DISABLE_OS_PROBER=true
        EOF
        """#

    /// The part of the hook that writes the disk: the partition table, then the root
    /// filesystem from $tree at its offset. The ESP is formatted by the one-shot boot.
    static let writeDisk = #"""
        mkdir -p "$tree/usr/lib/kiln"
        sed "s/@ESP_ID@/$esp_id/" "$KILN_INSTALLER" > "$tree/usr/lib/kiln/install-boot-loaders"
        chmod 0755 "$tree/usr/lib/kiln/install-boot-loaders"
        sectors=$(( KILN_DISK_SIZE / 1048576 * 2048 ))
        root_sectors=$(( sectors - @ROOT_START@ - 2048 ))
        truncate -s $(( sectors * 512 )) "$KILN_OUT/disk.raw"
        sfdisk -q "$KILN_OUT/disk.raw" <<EOF
        label: gpt
        start=@BIOS_START@, size=2048, type=@BIOS_TYPE@, name="bios"
        start=@ESP_START@, size=@ESP_SECTORS@, type=@ESP_TYPE@, name="esp"
        start=@ROOT_START@, size=$root_sectors, type=@ROOT_TYPE@, name="root"
        EOF
        mkfs.ext4 -q -F -L root -U "$root_uuid" -E offset=$(( @ROOT_START@ * 512 )) -d "$tree" "$KILN_OUT/disk.raw" $(( root_sectors / 2 ))k || {
          echo "kiln: the root filesystem ($(( root_sectors / 2048 )) MiB of disk_size) cannot hold the bootstrapped tree ($(du -sm "$tree" | cut -f1) MiB): raise provider.qemu.disk_size" >&2
          exit 1
        }
        """#
        .replacingOccurrences(of: "@BIOS_START@", with: String(biosBootStart))
        .replacingOccurrences(of: "@BIOS_TYPE@", with: biosBootType)
        .replacingOccurrences(of: "@ESP_START@", with: String(espStart))
        .replacingOccurrences(of: "@ESP_SECTORS@", with: String(espSectors))
        .replacingOccurrences(of: "@ESP_TYPE@", with: espType)
        .replacingOccurrences(of: "@ROOT_START@", with: String(rootStart))
        .replacingOccurrences(of: "@ROOT_TYPE@", with: rootX86_64Type)

    /// The host tools the hook lays the disk out with, by package. Looked for on PATH and in the
    /// sbin directories, which a user's PATH on Debian lacks (the hook adds them).
    static let hostTools = ["sfdisk": "fdisk", "mkfs.ext4": "e2fsprogs"]

    /// Before minutes of bootstrap: a missing tool would only fail the hook at its end.
    static func checkHostTools() throws {
        for (tool, package) in hostTools.sorted(by: { $0.key < $1.key })
        where ProcessRunner.find(tool) == nil
            && !["/usr/sbin/", "/sbin/"].contains(where: { FileManager.default.isExecutableFile(atPath: $0 + tool) })
        {
            throw KilnError(
                .buildFailed, "a debootstrap base needs \(tool) on the host to lay out its disk: install \(package) (make deps does)")
        }
    }

    /// The disk's one boot: its own kernel with the installer as init. The console says
    /// whether it finished; anything else is a failed source disk.
    static func installBootLoaders(disk: String, kernel: String, initrd: String, log: BuildLog) async throws {
        let started = ContinuousClock.now
        log.emit("kiln", "installing the boot loaders (GRUB for BIOS and UEFI) in the disk's first boot")
        let console = try await QemuProvider.bootOnce(
            disk: disk, format: "raw", kernel: kernel, initrd: initrd,
            commandLine: "root=\(rootDevice) rw console=ttyS0 quiet mitigations=off panic=-1 init=\(installerPath)",
            timeout: .seconds(600), log: log, title: "boot-loader")
        guard console.contains(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines) == doneMarker }) else {
            let failure = console.last(where: { $0.contains("kiln-boot-loaders: failed") }) ?? "it did not finish"
            throw KilnError(.buildFailed, "installing the boot loaders failed: \(failure) (see the boot-loader lines in the log)")
        }
        log.emit("kiln", "boot loaders installed in \((ContinuousClock.now - started).kilnDescription)")
    }
}
