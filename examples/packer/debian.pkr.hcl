# A Packer QEMU template in the style of public ones: a Debian cloud disk, provisioned over SSH.
# kiln import packer turns it into a kiln template (docs/from-packer.md):
#   kiln import packer examples/packer/debian.pkr.hcl --output images/
packer {
  required_plugins {
    qemu = {
      version = ">= 1.0.0"
      source  = "github.com/hashicorp/qemu"
    }
  }
}

variable "disk" {
  type        = string
  description = "A bootable Debian 12 qcow2 disk"
  default     = "debian-12-generic-amd64.qcow2"
}

variable "disk_checksum" {
  type    = string
  default = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
}

variable "release" {
  type    = string
  default = "1.0"
}

variable "api_token" {
  type      = string
  sensitive = true
  default   = "not-a-real-token"
}

locals {
  motd = "Built from a Packer template"
}

source "qemu" "debian" {
  disk_image       = true
  iso_url          = var.disk
  iso_checksum     = var.disk_checksum
  format           = "qcow2"
  accelerator      = "kvm"
  memory           = 1024
  cpus             = 2
  headless         = true
  ssh_username     = "root"
  ssh_timeout      = "10m"
  shutdown_command = "poweroff"
  vm_name          = "debian.qcow2"
  output_directory = "output-debian"
}

build {
  sources = ["source.qemu.debian"]

  provisioner "shell" {
    inline = [
      "mkdir -p /etc/shop",
      "echo \"${local.motd}\" > /etc/motd",
    ]
  }

  provisioner "shell" {
    script           = "scripts/setup.sh"
    environment_vars = ["RELEASE=${var.release}", "API_TOKEN=${var.api_token}", "BUILT=${timestamp()}"]
    max_retries      = 2
    pause_before     = "1s"
    timeout          = "5m"
  }

  provisioner "file" {
    source      = "files/shop.conf"
    destination = "/etc/shop/shop.conf"
  }

  provisioner "shell-local" {
    inline = ["echo built on the host"]
  }

  post-processor "compress" {
    output = "debian.tar.gz"
  }
}
